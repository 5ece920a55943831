import re

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


BOMB = ('{"a": &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"], "b": &b [*a, *a, *a, *a, *a, *a, *a, *a, *a], '
        '"c": &c [*b, *b, *b, *b, *b, *b, *b, *b, *b], "d": &d [*c, *c, *c, *c, *c, *c, *c, *c, *c], '
        '"e": &e [*d, *d, *d, *d, *d, *d, *d, *d, *d], "f": &f [*e, *e, *e, *e, *e, *e, *e, *e, *e], '
        '"g": &g [*f, *f, *f, *f, *f, *f, *f, *f, *f], "h": [*g, *g, *g, *g, *g, *g, *g, *g, *g]}')


def test_a_yaml_alias_bomb_is_refused_wherever_it_appears_before_any_folder(tmp_path):
    """Issue 28: under `encoders` it expanded until memory ran out (2-3 GB after 240 s), in --config,
    in --set and in a run folder's config.yaml read by `evaluate`, and left an empty run folder."""
    import time

    from mmrobust.cli import main

    started = time.perf_counter()
    config = tmp_path / "bomb.yaml"
    config.write_text(f"encoders:\n  image: {BOMB}\n")
    with pytest.raises(ConfigError, match="aliases \\(\\*name\\) are not allowed"):
        load_config(config)
    with pytest.raises(ConfigError, match="aliases"):
        load_config("tiny", [f"encoders.image={BOMB}"])
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
    run = tmp_path / "shared"
    run.mkdir()
    (run / "config.yaml").write_text(f"encoders:\n  image: {BOMB}\n")
    assert main(["evaluate", str(run)]) == 2
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("override,message", [
    ("train.lr=.nan", "lr must be a finite number > 0, got nan"),
    ("train.lr=.inf", "lr must be a finite number > 0, got inf"),
    ("train.lr=-0.001", "lr must be a finite number > 0, got -0.001"),
    ("train.weight_decay=.nan", "weight_decay must be a finite number >= 0, got nan"),
    ("protocols=[]", "protocols=[] evaluates nothing"),
    ("data.options.x=" + "[" * 60 + "]" * 60, "nested deeper than 50 levels"),
])
def test_configs_that_fail_late_or_say_nothing_are_refused_at_once(override, message):
    """Issue 38: each was a traceback after the run folder existed, a late failure naming no
    cause, a RecursionError, or a run of rc 0 with no records and no word."""
    from mmrobust.config import load_config
    from mmrobust.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("tiny", [override])


def test_a_deeply_nested_config_file_is_one_line(tmp_path):
    from mmrobust.config import load_config
    from mmrobust.errors import ConfigError

    path = tmp_path / "deep.yaml"
    path.write_text("data:\n  options:\n    x: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: not valid YAML .*nested deeper than 50 levels"):
        load_config(str(path))
