"""Records are data: the flat evaluation records of a run, summarised over seeds, and the tables
that report.md, the model card and the benchmarks' RESULTS render from them. Pure: no torch,
no methods.

A record: ``{dataset, method, seed, protocol, rate, pattern, metric, value, n_scored, n_rows}``;
``value`` is ``None`` where no row can be scored (a uni-modal model with its modality missing).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from .protocols import get_protocol

REFERENCE = "unimodal"  # the uni-modal models are named unimodal:<modality>


def reference_name(modality: str) -> str:
    """The method name of a modality's uni-modal model (its reference)."""
    return f"{REFERENCE}:{modality}"


def reference_modality(method: str) -> str | None:
    """The modality of a uni-modal model's name; ``None`` for any other method."""
    base, _, modality = method.partition(":")
    return modality if base == REFERENCE and modality else None


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (run `mmrobust evaluate` on this folder first)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sweep_areas(records: Sequence[dict]) -> list[dict]:
    """Area under metric-vs-rate (trapezoid on [0, 1]) per sweep and metric; n/a if any point is."""
    curves: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if get_protocol(r["protocol"]).kind == "sweep" and r["rate"] is not None:
            curves[(r["protocol"], r["metric"])].append(r)
    areas = []
    for (protocol, metric), points in curves.items():
        points = sorted(points, key=lambda r: r["rate"])
        values = [p["value"] for p in points]
        ok = all(v is not None and not math.isnan(v) for v in values)
        area = float(np.trapezoid(values, [p["rate"] for p in points])) if ok else None
        areas.append({"protocol": protocol, "rate": None, "pattern": None, "metric": f"area:{metric}",
                      "value": area, "n_scored": min(p["n_scored"] for p in points), "n_rows": points[0]["n_rows"]})
    return areas


def summarize(records: Sequence[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (method, protocol, rate, pattern, metric).

    A cell with any seed n/a is n/a. ``std`` is the sample standard deviation (0 for one seed).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r.get("dataset"), r["method"], r["protocol"], r["rate"], r["pattern"], r["metric"])].append(r)
    out = []
    for (dataset, method, protocol, rate, pattern, metric), rows in groups.items():
        values = [r["value"] for r in rows]
        ok = all(v is not None and not math.isnan(v) for v in values)
        out.append({"dataset": dataset, "method": method, "protocol": protocol, "rate": rate, "pattern": pattern,
                    "metric": metric, "mean": float(np.mean(values)) if ok else None,
                    "std": float(np.std(values, ddof=1)) if ok and len(values) > 1 else (0.0 if ok else None),
                    "seeds": sorted(r["seed"] for r in rows), "n_scored": min(r["n_scored"] for r in rows)})
    return out


def main_metric(records: Sequence[dict]) -> str:
    """The metric the tables show: F1-macro for multi-label runs, else accuracy."""
    return "f1_macro" if any(r["metric"] == "f1_macro" for r in records) else "accuracy"


def method_order(records: Sequence[dict]) -> list[str]:
    """Methods in order of appearance, the uni-modal references first."""
    names = list(dict.fromkeys(r["method"] for r in records))
    return [n for n in names if reference_modality(n)] + [n for n in names if not reference_modality(n)]


def method_label(method: str) -> str:
    modality = reference_modality(method)
    return f"*{modality} only (reference)*" if modality else method


Key = tuple  # (protocol, rate, pattern, metric): a cell of the summary, per method


def main_columns(summary: Sequence[dict], metric: str) -> list[tuple[str, Key]]:
    """(header, cell key) of the main table, one column per protocol that has one, in the
    protocols' order (observed, full, miss, MAP, sweep areas)."""
    columns = []
    for spec in dict.fromkeys(s["protocol"] for s in summary):
        protocol = get_protocol(spec)
        column = protocol.column(spec, next((s["rate"] for s in summary if s["protocol"] == spec), None))
        if column is not None:
            columns.append((protocol.order, column.header, (spec, column.rate, None, column.metric_prefix + metric)))
    return [(header, key) for _, header, key in sorted(columns, key=lambda c: c[0])]


def pattern_columns(summary: Sequence[dict], metric: str) -> list[tuple[str, Key]]:
    """(header, cell key) per presence pattern of the ``subsets`` protocol."""
    patterns = dict.fromkeys(s["pattern"] for s in summary if s["protocol"] == "subsets" and s["pattern"])
    return [(p, ("subsets", None, p, metric)) for p in patterns]


def cell_text(cell: dict | None) -> str:
    if cell is None or cell["mean"] is None:
        return "n/a"
    return f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f}"


def table_lines(summary: Sequence[dict], methods: Sequence[str], columns: Sequence[tuple[str, Key]],
                bold_best: bool = True) -> list[str]:
    """A markdown table, methods x columns (mean ± std in %), the best value of each column in bold."""
    by_key = {(s["method"], s["protocol"], s["rate"], s["pattern"], s["metric"]): s for s in summary}
    cells = {(m, header): by_key.get((m, *key)) for m in methods for header, key in columns}
    best = {header: max((c["mean"] for m in methods if (c := cells[(m, header)]) and c["mean"] is not None), default=None)
            for header, _ in columns}
    lines = ["| method | " + " | ".join(h for h, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for method in methods:
        row = []
        for header, _ in columns:
            cell, text = cells[(method, header)], cell_text(cells[(method, header)])
            row.append(f"**{text}**" if bold_best and cell and cell["mean"] is not None
                       and _same_pct(cell["mean"], best[header]) else text)
        lines.append(f"| {method_label(method)} | " + " | ".join(row) + " |")
    return lines


def _same_pct(a: float, b: float | None) -> bool:
    return b is not None and f"{100 * a:.1f}" == f"{100 * b:.1f}"


def main_table(records: Sequence[dict]) -> list[str]:
    """The main table of a run (every method, one column per protocol), as report.md and the
    model card show it."""
    summary = summarize(records)
    return table_lines(summary, method_order(records), main_columns(summary, main_metric(records)))


def robustness_ranking(records: Sequence[dict]) -> list[str]:
    """Methods ranked by the mean of ``full`` and each ``miss:<m>`` (the selection criterion of the
    fused models, here on the records' split), mean ± sample std over seeds; a method with any of
    those conditions n/a (a uni-modal reference) is left out."""
    metric = main_metric(records)
    wanted = {r["protocol"] for r in records if r["protocol"] == "full" or get_protocol(r["protocol"]).kind == "miss"}
    per_seed: dict[tuple, list] = defaultdict(list)
    for r in records:
        if r["protocol"] in wanted and r["metric"] == metric and r["rate"] is None:
            per_seed[(r["method"], r["seed"])].append(r["value"])
    scores: dict[str, list[float]] = defaultdict(list)
    for (method, _), values in per_seed.items():
        if len(values) == len(wanted) and all(v is not None for v in values):
            scores[method].append(float(np.mean(values)))
    ranked = sorted(scores, key=lambda m: -np.mean(scores[m]))
    conditions = " + ".join(sorted(wanted, key=lambda p: (p != "full", p)))
    lines = [f"| rank | method | mean of {conditions} |", "|---:|---|---:|"]
    for i, method in enumerate(ranked, 1):
        values = scores[method]
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        lines.append(f"| {i} | {method} | {100 * np.mean(values):.1f} ± {100 * std:.1f} |")
    return lines
