"""The input gate on texts: the character model against a second implementation, the parts by
hand, and the gate that ignores a placeholder, a repeated word and random letters."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

import mmrobust as mm
from mmrobust.gate import InputGate
from mmrobust.textgate import ORDER, TEXT_CHARS, fit_text_model, no_text_views, repeated_words, text_parts, text_views

CONFIG = mm.TrainConfig(epochs=2, batch_size=32, lr=3e-3, device="cpu", progress=False)
WORDS = ("red green blue yellow orange purple black white smiling grinning face cat dog heart hand "
         "raised open closed book flag star moon sun cloud with without big small eyes mouth tears joy").split()


def witten_bell(train: list[str], text: str, order: int) -> list[float]:
    """A second implementation, with dictionaries of strings: each character's (and the end's)
    surprisal under the interpolated Witten-Bell model over the training alphabet."""
    start, end = "\x02", "\x03"
    alphabet = set("".join(train))
    counts = Counter()
    for t in train:
        s = start * (order - 1) + t + end
        for i in range(order - 1, len(s)):
            for n in range(1, order + 1):
                counts[s[i - n + 1:i + 1]] += 1
    totals, types = Counter(), Counter()
    for gram, c in counts.items():
        totals[gram[:-1]] += c
        types[gram[:-1]] += 1
    s = start * (order - 1) + "".join(c if c in alphabet else "\x00" for c in text) + end
    out = []
    for i in range(order - 1, len(s)):
        p = 1.0 / (len(alphabet) + 2)  # the alphabet, the unknown character, the end
        for n in range(1, order + 1):
            context = s[i - n + 1:i]
            if totals[context]:
                p = (counts[context + s[i]] + types[context] * p) / (totals[context] + types[context])
        out.append(-math.log(p))
    return out


def names(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, rng.integers(2, 5), replace=False)) for _ in range(n)]


def random_letters(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return [" ".join("".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(rng.integers(3, 7))) for _ in range(n)]


def test_the_character_model_against_a_second_implementation():
    train = ["grinning face", "red heart", "flag: Côte d’Ivoire", "a", "cat face with tears of joy"]
    model = fit_text_model(text_views(train))
    texts = ["cat face", "N/A", "", "zzz qqq", "face with heart", "héllo ☃"]  # unseen characters, an empty text
    parts = text_parts(text_views(texts), model)
    for i, text in enumerate(texts):
        expected = witten_bell(train, text, ORDER)
        assert parts["characters"][i] == pytest.approx(np.mean(expected), rel=1e-9)
        without_context = witten_bell(train, text, 1)
        assert parts["context"][i] == pytest.approx(sum(expected) - sum(without_context), rel=1e-9, abs=1e-9)
    # a model of one order less is another model (the order is read, not assumed)
    assert witten_bell(train, "cat face", ORDER - 1) != pytest.approx(witten_bell(train, "cat face", ORDER))


def test_repeated_words_by_hand():
    assert repeated_words("family: man, woman, boy, boy") == pytest.approx(1 / 5)
    assert repeated_words("The the THE") == pytest.approx(2 / 3)
    assert repeated_words("grinning face") == 0.0 and repeated_words("") == 0.0 and repeated_words("!!") == 0.0


def test_a_text_view_is_its_first_code_points_and_a_row_without_text_is_not_judged():
    views = text_views(["héllo", "x" * (TEXT_CHARS + 10)])
    assert views.dtype == np.int32 and views.shape == (2, TEXT_CHARS)
    assert views[0, :6].tolist() == [104, 233, 108, 108, 111, 0] and (views[1] == ord("x")).all()
    model = fit_text_model(text_views(["cat face", "dog face"]))
    for values in text_parts(no_text_views(2), model).values():
        assert np.isnan(values).all()


@pytest.fixture(scope="module")
def text_gate():
    """A gate fitted on a modality whose model input is a feature vector and whose raw view is its text."""
    rng = np.random.default_rng(0)
    data = mm.make_synthetic({"train": 600, "val": 600, "test": 10}, {"caption": 6}, noise={"caption": 1.0}, seed=1)

    def with_text(d):
        return mm.MultiModalDataset(d.inputs, d.target, raw={"caption": text_views(names(rng, len(d)))})

    train, val = with_text(data["train"]), with_text(data["val"])
    stage1 = mm.train_stage1({"caption": mm.EncoderSpec("mlp-tiny", in_dim=6)}, train, val, num_classes=4, seed=0,
                             train_config=CONFIG)
    return InputGate.fit(stage1.models, train, val), stage1, rng


def test_the_gate_ignores_a_placeholder_a_repeated_word_and_random_letters(text_gate):
    gate, _, rng = text_gate
    clean, letters = names(rng, 2000), random_letters(rng, 200)
    broken = ["N/A", " ".join(["face"] * 8), "-", *letters]
    texts = clean + broken
    inputs = {"caption": np.zeros((len(texts), 6), np.float32)}  # the features say nothing here: only the text can
    scores = gate.scores(inputs, {"caption": np.ones(len(texts), bool)}, {"caption": text_views(texts)})["caption"]
    flagged = scores > gate.gates["caption"].threshold
    assert flagged[len(clean):].all()
    assert flagged[:len(clean)].mean() <= 0.02  # the share chosen on validation (0.5%), with room for sampling
    assert gate.gates["caption"].reads_raw
    unjudged = gate.scores({"caption": inputs["caption"][:2]}, {"caption": np.ones(2, bool)},
                           {"caption": no_text_views(2)})["caption"]
    assert unjudged.tolist() == [-np.inf, -np.inf]  # given as features: no text to judge, taken as plausible


def test_the_text_gate_round_trips_through_its_tensors(text_gate):
    gate, stage1, rng = text_gate
    restored = InputGate.restore(gate.to_dict(), gate.state_tensors(), {"caption": stage1.models["caption"]}, "gate")
    texts = names(rng, 50) + ["N/A", "qzx wvk"]
    args = ({"caption": np.zeros((len(texts), 6), np.float32)}, {"caption": np.ones(len(texts), bool)},
            {"caption": text_views(texts)})
    assert np.array_equal(restored.scores(*args)["caption"], gate.scores(*args)["caption"])
