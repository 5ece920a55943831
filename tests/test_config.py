import pytest

from mmrobust.config import ConfigError, config_from_dict, config_to_dict, list_presets, load_config


def test_presets_load_and_round_trip():
    assert {"digits", "tiny", "synthetic"} <= set(list_presets())
    for name in list_presets():
        config = load_config(name)
        assert config_from_dict(config_to_dict(config)) == config
    assert load_config().data.name == "digits" and load_config().seeds == [0, 1, 2]


def test_overrides_are_typed():
    config = load_config("tiny", ["train.epochs=4", "seeds=[3, 4]", "train.lr=1", "train_missing={audio: 0.5}",
                                  "encoders.image={name: lenet, channels: 4}"])
    assert config.train.epochs == 4 and config.seeds == [3, 4] and config.train.lr == 1.0
    assert config.train_missing == {"audio": 0.5} and config.encoders["image"]["channels"] == 4


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown config key 'train.epoch'"),
    ("nope=1", "unknown config key 'nope'"),
    ("seeds=3", "'seeds' expects a list"),
    ("train.lr=fast", "'train.lr' expects float"),
    ("data.limit=true", "'data.limit' expects int"),
    ("train.optimizer=rmsprop", "optimizer must be one of"),
    ("epochs", "expects key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_config_files(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("data: {name: synthetic}\ntrain: {epochs: 2}\n")
    assert load_config(path).train.epochs == 2
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not a file, and not a preset"):
        load_config("no-such-preset")
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
