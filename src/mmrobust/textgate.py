"""What the input gate reads of a text: a character n-gram model of the training texts.

A pre-trained text encoder maps a placeholder ("N/A"), one word repeated or random letters among
real texts' features (benchmarks/failures/RESULTS.md, ``emoji-features``), so the gate reads the
text itself, as Unicode code points (:func:`text_views`), and scores it against an interpolated
Witten-Bell character model of order :data:`ORDER` (Witten and Bell, 1991; Chen and Goodman,
1999) fitted on the training texts. Three parts, each thresholded like the gate's others:

- ``characters``: the mean surprisal per character, in nats (odd characters, an odd short text:
  "N/A", "-", "???"),
- ``context``: the log-likelihood ratio, summed over the text, of the training texts' character
  frequencies (no context) against the model (> 0: the characters' order says nothing, as in
  random letters; it grows with a random text's length and falls with a real one's),
- ``repetition``: the share of the text's words that repeat an earlier word (a stuck field, one
  token repeated).

The model is kept as tensors (the alphabet's code points, each order's n-grams and counts), so
it saves in ``model/`` with the gate's other statistics, without code.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

ORDER = 4  # characters of context + 1 (orders 3 and 5 caught fewer random words at the emoji names' validation threshold)
TEXT_CHARS = 256  # code points the gate reads of a text (its beginning)
ALPHABET = 1000  # the most frequent training characters kept; the rest share one symbol
NO_TEXT = -1  # first code of a row with no text to judge (given as features): scored as plausible

_PAD = 0  # after a text's end in its view
_UNKNOWN, _START, _END, _FIRST = 0, 1, 2, 3  # symbols; the alphabet's characters from _FIRST on


def text_views(texts: Sequence[str]) -> np.ndarray:
    """Each text's first :data:`TEXT_CHARS` code points, int32, padded with 0 (``n x TEXT_CHARS``)."""
    out = np.full((len(texts), TEXT_CHARS), _PAD, dtype=np.int32)
    for i, text in enumerate(texts):
        codes = [ord(c) for c in str(text)[:TEXT_CHARS]]
        out[i, :len(codes)] = codes
    return out


def no_text_views(n: int) -> np.ndarray:
    """Views of ``n`` rows with no text to judge (the gate scores them as plausible)."""
    out = np.full((n, TEXT_CHARS), _PAD, dtype=np.int32)
    out[:, 0] = NO_TEXT
    return out


def is_text_view(x) -> bool:
    """Whether a raw input is text views (:func:`text_views`): int32 rows of code points."""
    return x is not None and getattr(x, "dtype", None) in (np.int32, torch.int32) and len(x.shape) == 2


def _texts(views: Tensor | np.ndarray) -> list[str | None]:
    views = np.asarray(views)
    return [None if row[0] == NO_TEXT else "".join(map(chr, row[row != _PAD])) for row in views]


def fit_text_model(views: Tensor | np.ndarray) -> dict[str, Tensor]:
    """The character model of the training texts: ``text_alphabet`` (code points, most frequent
    first) and, per order n up to :data:`ORDER`, ``text_ngrams_n`` (sorted symbol n-grams as
    integers) and ``text_counts_n``."""
    texts = [t for t in _texts(views) if t is not None]
    codes, counts = np.unique(np.fromiter((ord(c) for t in texts for c in t), dtype=np.int64), return_counts=True)
    alphabet = codes[np.argsort(-counts, kind="stable")][:ALPHABET]
    stats = {"text_alphabet": torch.from_numpy(alphabet)}
    sequences = _symbols(texts, alphabet, ORDER)
    for n in range(1, ORDER + 1):
        grams, grams_counts = np.unique(_ngrams(sequences, n, _base(alphabet), ORDER), return_counts=True)
        stats[f"text_ngrams_{n}"] = torch.from_numpy(grams)
        stats[f"text_counts_{n}"] = torch.from_numpy(grams_counts.astype(np.int64))
    return stats


def _order(stats: Mapping[str, Tensor]) -> int:
    """The order of a fitted model (a saved one keeps its own)."""
    return sum(1 for k in stats if k.startswith("text_ngrams_"))


def _base(alphabet: np.ndarray) -> int:
    return len(alphabet) + _FIRST


def _symbols(texts: Sequence[str], alphabet: np.ndarray, order: int) -> list[np.ndarray]:
    """Each text as symbols: ``order - 1`` starts, its characters (unknown ones as one symbol), an end."""
    rank = np.argsort(alphabet)
    sorted_codes = alphabet[rank]
    out = []
    for text in texts:
        codes = np.fromiter((ord(c) for c in text), dtype=np.int64, count=len(text))
        at = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
        symbols = np.where(sorted_codes[at] == codes, rank[at] + _FIRST, _UNKNOWN)
        out.append(np.concatenate([np.full(order - 1, _START), symbols, [_END]]).astype(np.int64))
    return out


def _ngrams(sequences: Sequence[np.ndarray], n: int, base: int, order: int) -> np.ndarray:
    """Every n-gram ending at a predicted symbol (after the ``order - 1`` starts), as one integer."""
    out = []
    for s in sequences:
        ends = np.arange(order - 1, len(s))
        value = np.zeros(len(ends), dtype=np.int64)
        for k in range(n - 1, -1, -1):
            value = value * base + s[ends - k]
        out.append(value)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def text_parts(views: Tensor | np.ndarray, stats: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """The ``characters``, ``context`` and ``repetition`` parts of each row (NaN where it has no
    text to judge)."""
    texts = _texts(views)
    judged = [i for i, t in enumerate(texts) if t is not None]
    sequences = _symbols([texts[i] for i in judged], stats["text_alphabet"].numpy(), _order(stats))
    parts = {name: np.full(len(texts), np.nan) for name in ("characters", "context", "repetition")}
    for i, s, s1 in zip(judged, *_surprisal(sequences, stats)):
        parts["characters"][i] = s.mean()
        parts["context"][i] = float(np.sum(s - s1))
        parts["repetition"][i] = repeated_words(texts[i])
    return parts


def _surprisal(sequences: Sequence[np.ndarray], stats: Mapping[str, Tensor]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per sequence (padded for the model's order), each predicted symbol's surprisal (nats) under
    the interpolated Witten-Bell model, and under its first order alone (the training texts'
    character frequencies, no context)."""
    if not sequences:
        return [], []
    order, base = _order(stats), _base(stats["text_alphabet"].numpy())
    lengths = [len(s) - (order - 1) for s in sequences]
    p = np.full(sum(lengths), 1.0 / (base - 1))  # uniform over every symbol but the start
    for n in range(1, order + 1):
        grams, counts = stats[f"text_ngrams_{n}"].numpy(), stats[f"text_counts_{n}"].numpy().astype(float)
        contexts, context_index = np.unique(grams // base, return_inverse=True)
        totals = np.bincount(context_index, weights=counts, minlength=len(contexts))
        types = np.bincount(context_index, minlength=len(contexts)).astype(float)
        values = _ngrams(sequences, n, base, order)
        seen = _lookup(grams, values, counts)
        total, distinct = _lookup(contexts, values // base, totals), _lookup(contexts, values // base, types)
        p = np.where(distinct > 0, (seen + distinct * p) / np.maximum(total + distinct, 1e-300), p)  # a seen context
        if n == 1:
            without_context = p
    split = np.cumsum(lengths)[:-1]
    return np.split(-np.log(p), split), np.split(-np.log(without_context), split)


def _lookup(keys: np.ndarray, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The count of each value among the sorted ``keys`` (0 where absent; ``counts`` of one per key)."""
    at = np.clip(np.searchsorted(keys, values), 0, len(keys) - 1)
    return np.where(keys[at] == values, counts[at], 0.0)


def repeated_words(text: str) -> float:
    """The share of the text's words (lower-cased, without surrounding punctuation) that repeat an earlier one."""
    words = [w for w in (w.strip(".,;:!?()[]{}\"'“”‘’").lower() for w in text.split()) if w]
    return 1.0 - len(set(words)) / len(words) if words else 0.0
