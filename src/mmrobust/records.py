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
from typing import Mapping, Sequence

import numpy as np

from .protocols import corruption_parts, get_protocol

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


def cell_text(cell: dict | None, interval: tuple | None = None) -> str:
    """``mean ± std`` in % (over seeds), with the 95% bootstrap interval when given."""
    if cell is None or cell["mean"] is None:
        return "n/a"
    text = f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f}"
    return text + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval and interval[0] is not None else "")


def evidence_intervals(evidence: Sequence[dict]) -> dict[tuple, tuple]:
    """(method, protocol, rate, pattern, metric) -> (low, high) of the bootstrap interval."""
    return {(e["method"], e["protocol"], e["rate"], e["pattern"], e["metric"]): (e["low"], e["high"]) for e in evidence}


def table_lines(summary: Sequence[dict], methods: Sequence[str], columns: Sequence[tuple[str, Key]],
                bold_best: bool = True, intervals: dict | None = None) -> list[str]:
    """A markdown table, methods x columns (mean ± std in %, with the bootstrap interval where
    ``intervals`` has one), the best value of each column in bold."""
    intervals = intervals or {}
    by_key = {(s["method"], s["protocol"], s["rate"], s["pattern"], s["metric"]): s for s in summary}
    cells = {(m, header): by_key.get((m, *key)) for m in methods for header, key in columns}
    best = {header: max((c["mean"] for m in methods if (c := cells[(m, header)]) and c["mean"] is not None), default=None)
            for header, _ in columns}
    lines = ["| method | " + " | ".join(h for h, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for method in methods:
        row = []
        for header, key in columns:
            cell, text = cells[(method, header)], cell_text(cells[(method, header)], intervals.get((method, *key)))
            row.append(f"**{text}**" if bold_best and cell and cell["mean"] is not None
                       and _same_pct(cell["mean"], best[header]) else text)
        lines.append(f"| {method_label(method)} | " + " | ".join(row) + " |")
    return lines


def _same_pct(a: float, b: float | None) -> bool:
    return b is not None and f"{100 * a:.1f}" == f"{100 * b:.1f}"


def main_table(records: Sequence[dict], evidence: Sequence[dict] = ()) -> list[str]:
    """The main table of a run (every method, one column per protocol), as report.md and the
    model card show it; with ``evidence``, each cell that has one shows its bootstrap interval."""
    summary = summarize(records)
    return table_lines(summary, method_order(records), main_columns(summary, main_metric(records)),
                       intervals=evidence_intervals(evidence))


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage with ``digits`` decimals; ``n/a`` for None."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def evidence_table(evidence: Sequence[dict], methods: Sequence[str]) -> list[str]:
    """Per presence pattern (``subsets``), each method: the value with its 95% interval, the
    retention, the best uni-modal reference present, the paired difference and the verdict."""
    rows = [e for e in evidence if e["protocol"] == "subsets"]
    order = {m: i for i, m in enumerate(methods)}
    patterns = list(dict.fromkeys(e["pattern"] for e in rows))
    rows.sort(key=lambda e: (patterns.index(e["pattern"]), order.get(e["method"], len(order))))
    lines = ["| present | method | value [95% CI] | retention | best reference present | difference [95% CI] | verdict |",
             "|---|---|---:|---:|---|---:|---|"]
    for e in rows:
        difference = (f"{100 * e['difference']:+.1f} {_bracket(e['difference_low'], e['difference_high'], '+.1f')}"
                      if e["reference"] else "")
        lines.append(f"| {e['pattern']} | {method_label(e['method'])} | {pct(e['value'])} {_bracket(e['low'], e['high'], '.1f')} | "
                     f"{pct(e['retention'], 0)}% | {e['reference'] or ''} | {difference} | {_verdict(e)} |")
    return lines


def _verdict(e: Mapping) -> str:
    """above / tied / below, or, where the pattern has too few test units for an interval, that it
    cannot be judged (and on how many)."""
    if e["verdict"]:
        return e["verdict"]
    if e["low"] is None and e.get("units") is not None:
        return f"too few test rows to judge ({e['units']})"
    return ""


def _bracket(low: float | None, high: float | None, spec: str) -> str:
    """``[low, high]`` in %, or why there is none (too few units for an interval to hold)."""
    if low is None:
        return "[no interval: too few units]"
    return f"[{100 * low:{spec}}, {100 * high:{spec}}]"


def _pattern_rows(summary: Sequence[dict], methods: Sequence[str], metric: str) -> list[tuple[str, str, dict]]:
    """(pattern, method, {metric: cell}) for every pattern and method with a ``metric`` cell."""
    cells = {(s["pattern"], s["method"], s["metric"]): s for s in summary if s["protocol"] == "subsets"}
    patterns = list(dict.fromkeys(s["pattern"] for s in summary if s["protocol"] == "subsets" and s["metric"] == metric))
    return [(p, m, {k[2]: c for k, c in cells.items() if k[0] == p and k[1] == m})
            for p in patterns for m in methods if (p, m, metric) in cells]


def _cell_mean(cells: Mapping[tuple, dict], key: tuple, scale: float = 100, digits: int = 1) -> str:
    """:func:`_mean` of the summary cell ``(method, protocol, metric)`` (n/a where there is none)."""
    return _mean({key[2]: cells[key]} if key in cells else {}, key[2], scale, digits)


def _mean(cells: dict, metric: str, scale: float = 100, digits: int = 1) -> str:
    cell = cells.get(metric)
    return "n/a" if cell is None or cell["mean"] is None else f"{scale * cell['mean']:.{digits}f}"


def calibration_table(summary: Sequence[dict], methods: Sequence[str]) -> list[str]:
    """Per presence pattern and method: ECE, NLL and Brier before → after temperature scaling
    (means over seeds) and the temperature."""
    lines = ["| present | method | ECE % | NLL | Brier | temperature |", "|---|---|---:|---:|---:|---:|"]
    for pattern, method, cells in _pattern_rows(summary, methods, "ece"):
        pairs = [f"{_mean(cells, m, *fmt)} → {_mean(cells, m + ':calibrated', *fmt)}"
                 for m, fmt in (("ece", (100, 1)), ("nll", (1, 3)), ("brier", (1, 3)))]
        lines.append(f"| {pattern} | {method_label(method)} | {' | '.join(pairs)} | {_mean(cells, 'temperature', 1, 2)} |")
    return lines


def coverage_table(summary: Sequence[dict], methods: Sequence[str], coverage: float = 0.9) -> list[str]:
    """Per presence pattern and method: the conformal sets' test coverage and mean size, per
    pattern (Mondrian) and pattern-blind, and the risk side: the share of rows answered with a
    single label and the accuracy on them. A coverage more than 3 points under target is marked."""
    tag = f"@{coverage:g}"

    def covered(cells, metric):
        text = _mean(cells, metric)
        cell = cells.get(metric)
        return f"**{text}** (under)" if cell and cell["mean"] is not None and cell["mean"] < coverage - 0.03 else text

    lines = ["| present | method | coverage, per pattern | set size | coverage, pattern-blind | set size | answered % | "
             "accuracy when answered | validation rows |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for pattern, method, cells in _pattern_rows(summary, methods, "coverage" + tag + ":blind"):
        lines.append(f"| {pattern} | {method_label(method)} | {covered(cells, 'coverage' + tag)} | "
                     f"{_mean(cells, 'set_size' + tag, 1, 2)} | {covered(cells, 'coverage' + tag + ':blind')} | "
                     f"{_mean(cells, 'set_size' + tag + ':blind', 1, 2)} | {_mean(cells, 'answered' + tag)} | "
                     f"{_mean(cells, 'answered_accuracy' + tag)} | {_mean(cells, 'validation_rows', 1, 0)} |")
    return lines


def failure_table(summary: Sequence[dict], methods: Sequence[str], metric: str) -> list[str]:
    """Per ``fail:`` condition and multi-modal method: the metric without and with the input gate,
    with the broken modality declared missing, the best uni-modal model of what still works, and
    the gate's detections (broken inputs ignored) and false alarms (clean inputs ignored, on every
    test row where the modality is present: ``observed``, or ``full`` where the data has no gaps)."""
    cells = {(s["method"], s["protocol"], s["metric"]): s for s in summary if s["pattern"] is None and s["rate"] is None}
    failures = list(dict.fromkeys(s["protocol"] for s in summary if s["protocol"].startswith("fail:")))
    clean = clean_protocol(summary)

    def value(method, protocol, name, scale=100, digits=1):
        return _cell_mean(cells, (method, protocol, name), scale, digits)

    lines = ["| condition | method | ungated | gated | declared missing | uni-modal of the rest | detected % | "
             "false alarms % |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for protocol in failures:
        broken = protocol.split(":", 1)[1].rsplit("@", 1)[0]
        rest = [(cells[(m, protocol, metric)]["mean"], m) for m in methods
                if reference_modality(m) not in (None, broken) and (m, protocol, metric) in cells
                and cells[(m, protocol, metric)]["mean"] is not None]
        best = f"{100 * max(rest)[0]:.1f} ({method_label(max(rest)[1])})" if rest else "n/a"
        for method in methods:
            if reference_modality(method) or (method, protocol, metric) not in cells:
                continue
            lines.append(f"| `{protocol}` | {method_label(method)} | {value(method, protocol, metric)} | "
                         f"{value(method, protocol, metric + ':gated')} | {value(method, protocol, metric + ':declared')} | "
                         f"{best} | {value(method, protocol, 'ignored:' + broken)} | "
                         f"{value(method, clean, 'ignored:' + broken, 100, 2)} |")
    return lines


def corruption_conditions(summary: Sequence[dict]) -> dict[tuple[str, str], dict[int, str]]:
    """``(modality, kind) -> {severity: protocol}`` over the ``corrupt:`` conditions of a summary
    (one share of rows per table: a protocol with ``@<share>`` is keyed ``kind@share``)."""
    out: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
    for protocol in dict.fromkeys(s["protocol"] for s in summary if s["protocol"].startswith("corrupt:")):
        modality, _, rest = protocol[len("corrupt:"):].partition("@")
        corruption, _, share = rest.partition("@")
        kind, severity = corruption_parts(protocol, corruption)
        out[(modality, kind + (f"@{share}" if share else ""))][severity] = protocol
    return dict(out)


def clean_protocol(summary: Sequence[dict]) -> str:
    """The condition of clean inputs to compare with: ``observed`` where the data has gaps (every row
    as it comes), else ``full``."""
    return "observed" if any(s["protocol"] == "observed" for s in summary) else "full"


VARIANTS = ("", ":gated", ":soft", ":declared")  # ungated, hard gate, soft gate, the modality declared missing


def degraded_table(summary: Sequence[dict], methods: Sequence[str], metric: str) -> list[str]:
    """Per corrupted modality, kind and multi-modal method: the metric at severities 1-5 without the
    gate, with the hard gate, with the soft gate and with the modality declared missing
    (``u / g / s / d``), the share of degraded inputs the hard gate ignored at each severity, and
    the method's value on the same rows with their inputs clean."""
    cells = {(s["method"], s["protocol"], s["metric"]): s for s in summary if s["pattern"] is None and s["rate"] is None}

    def value(method, protocol, name, scale=100, digits=1):
        return _cell_mean(cells, (method, protocol, name), scale, digits)

    lines = ["| modality | kind | method | clean | " + " | ".join(f"severity {s}: ungated / gated / soft / declared" for s in
                                                          range(1, 6)) + " | ignored % at 1-5 |",
             "|---|---|---|---:|" + "---:|" * 5 + "---|"]
    for (modality, kind), severities in corruption_conditions(summary).items():
        for method in methods:
            if reference_modality(method) or not any((method, p, metric) in cells for p in severities.values()):
                continue
            triples = [" / ".join(value(method, severities[s], metric + suffix) for suffix in VARIANTS)
                       if s in severities else "n/a" for s in range(1, 6)]
            ignored = "/".join(value(method, severities[s], f"ignored:{modality}", 100, 0) if s in severities else "n/a"
                               for s in range(1, 6))
            lines.append(f"| {modality} | {kind} | {method_label(method)} | {value(method, severities[min(severities)], metric + ':clean')} | "
                         + " | ".join(triples) + f" | {ignored} |")
    return lines


def degraded_summary(summary: Sequence[dict], methods: Sequence[str], metric: str) -> list[str]:
    """Per corrupted modality and multi-modal method, over every kind and severity: the mean metric
    ungated, with the hard and the soft gate and declared missing; *retained*: the soft mean over the
    mean on the same rows with their inputs clean; *effective*: the soft mean minus the declared-missing one (what the degraded modality
    still adds); the worst condition's soft minus declared and soft minus ungated."""
    cells = {(s["method"], s["protocol"], s["metric"]): s["mean"] for s in summary
             if s["pattern"] is None and s["rate"] is None and s["mean"] is not None}
    lines = ["| modality | method | conditions | ungated | gated | soft | declared | retained (soft) | effective (soft) | "
             "worst soft − declared | worst soft − ungated |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by_modality: dict[str, list[str]] = defaultdict(list)
    for (modality, _), severities in corruption_conditions(summary).items():
        by_modality[modality] += list(severities.values())
    for modality, protocols in by_modality.items():
        for method in methods:
            got = [p for p in protocols if all((method, p, metric + x) in cells for x in VARIANTS)]
            if reference_modality(method) or not got:
                continue
            u, g, soft, d = (np.array([cells[(method, p, metric + x)] for p in got]) for x in VARIANTS)
            clean = np.array([cells.get((method, p, metric + ":clean"), np.nan) for p in got])
            retained = f"{soft.mean() / clean.mean():.3f}" if np.all(clean > 0) else "n/a"
            worst_d, worst_u = int(np.argmin(soft - d)), int(np.argmin(soft - u))
            lines.append(f"| {modality} | {method_label(method)} | {len(got)} | {100 * u.mean():.1f} | {100 * g.mean():.1f} | "
                         f"{100 * soft.mean():.1f} | {100 * d.mean():.1f} | {retained} | {100 * (soft.mean() - d.mean()):+.1f} | "
                         f"{100 * (soft - d)[worst_d]:+.1f} (`{got[worst_d]}`) | {100 * (soft - u)[worst_u]:+.1f} (`{got[worst_u]}`) |")
    return lines


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


def candidate_order(scores: Mapping[str, float]) -> list[str]:
    """UME-MMA's candidates from simplest: the uni-modal models (best first, then by name), the
    ensemble (``ume``), MMA (``mma``)."""
    return sorted(scores, key=lambda c: (0, -scores[c], c) if reference_modality(c) else (1 + (c == "mma"), 0, c))


def choice_text(fit: Mapping) -> str:
    """What a UME-MMA fit uses per presence pattern: ``audio+image → mma, audio → unimodal:audio, ...``
    (``every pattern → mma`` when it is one method)."""
    uses = fit["pattern_choice"]
    if len(set(uses.values())) == 1:
        return f"every pattern → {next(iter(uses.values()))}"
    return ", ".join(f"{pattern} → {choice}" for pattern, choice in uses.items())


def against_unimodal(records: Sequence[dict], methods: Sequence[str] = ("ume-mma-paper", "ume-mma")) -> list[str]:
    """Per presence pattern (``full`` and each modality missing): the best uni-modal model of the
    modalities present beside each of ``methods`` (mean ± std over seeds), and the gaps in points:
    the first method against the best uni-modal model and the last against the first."""
    metric = main_metric(records)
    cells = {(s["method"], s["protocol"]): s for s in summarize(records)
             if s["metric"] == metric and s["rate"] is None and s["pattern"] is None}
    per_seed = {(r["method"], r["protocol"], r["seed"]): r["value"] for r in records
                if r["metric"] == metric and r.get("rate") is None and r.get("pattern") is None and r["value"] is not None}
    modalities = sorted({reference_modality(m) for m, _ in cells if reference_modality(m)})
    first, last = methods[0], methods[-1]
    lines = ["| test pattern | best uni-modal | " + " | ".join(methods)
             + f" | {last} − best uni-modal | the same, worst seed | {last} − {first} |",
             "|---|---|" + "---:|" * (len(methods) + 3)]
    for protocol in ["full", *[f"miss:{m}" for m in modalities]]:
        present = [m for m in modalities if protocol != f"miss:{m}"]
        references = [(cells[(reference_name(m), protocol)]["mean"], reference_name(m)) for m in present
                      if cells.get((reference_name(m), protocol), {}).get("mean") is not None]
        if not references or any((m, protocol) not in cells for m in methods):
            continue
        best_value, best = max(references)
        gap = 100 * (cells[(last, protocol)]["mean"] - best_value)
        change = 100 * (cells[(last, protocol)]["mean"] - cells[(first, protocol)]["mean"])
        seeds = sorted(seed for (m, p, seed) in per_seed if m == last and p == protocol and (best, p, seed) in per_seed)
        worst = min(((100 * (per_seed[(last, protocol, seed)] - per_seed[(best, protocol, seed)]), seed) for seed in seeds),
                    default=None)
        worst_text = f"{worst[0]:+.1f} (seed {worst[1]})" if worst else "n/a"
        lines.append(f"| {'+'.join(present)} | {best} {100 * best_value:.1f} | "
                     + " | ".join(cell_text(cells[(m, protocol)]) for m in methods) + f" | {gap:+.1f} | {worst_text} | {change:+.1f} |")
    return lines
