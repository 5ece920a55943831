"""Records -> ``report.md`` and ``robustness.png``. Reads a run folder's records; computes nothing
new (the tables come from :mod:`mmrobust.records`). No torch, no methods."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from .config import GATE_SOFT_RAMP as SOFT_RAMP, load_yaml

from .files import atomic_path, write_text
from .protocols import get_protocol
from .evidence import MIN_UNITS
from .records import (calibration_table, candidate_order, corruption_conditions, coverage_table, degraded_summary, degraded_table, evidence_intervals, evidence_table, failure_table, main_columns,
                      main_metric, method_order, pattern_columns, pct, read_jsonl, reference_modality, summarize,
                      table_lines)


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` and ``robustness.png`` into ``run_dir``; returns the report's path."""
    run_dir = Path(run_dir)
    records = read_jsonl(run_dir / "results.jsonl")
    fits = _read_json(run_dir / "fits.json", [])
    provenance = _read_json(run_dir / "provenance.json", {})
    config = load_yaml((run_dir / "config.yaml").read_text(encoding="utf-8")) if (run_dir / "config.yaml").is_file() else {}
    evidence = read_jsonl(run_dir / "evidence.jsonl") if (run_dir / "evidence.jsonl").is_file() else []
    summary = summarize(records)
    metric = main_metric(records)
    methods = method_order(records)
    figure = plot_robustness(summary, metric, methods, run_dir / "robustness.png", fits)
    reliability = plot_reliability(_read_json(run_dir / "reliability.json", []), methods, run_dir / "reliability.png")
    plot_degraded(summary, metric, methods, run_dir / "degraded.png")
    text = render_markdown(summary, fits, provenance, config, metric, methods, figure is not None, evidence,
                           reliability is not None)
    write_text(run_dir / "report.md", text)
    return run_dir / "report.md"


def _read_json(path: Path, default):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def render_markdown(summary, fits, provenance, config, metric, methods, has_figure, evidence=(),
                    has_reliability=False) -> str:
    seeds = sorted({seed for s in summary for seed in s["seeds"]})
    dataset = next((s["dataset"] for s in summary), config.get("data", {}).get("name"))
    n_rows = _rows_text(summary)
    name = "accuracy" if metric == "accuracy" else "F1-macro"
    out = [f"# mmrobust report: {dataset}", "",
           f"Test {name} in %, mean ± sample std over seeds {seeds} (each seed retrains every method, Stage 1 "
           f"included, and draws its own test masks, the same for every method). Comparisons are paired: within a "
           f"seed every multi-modal method sees the same batch order and modality-dropout draws, and methods that "
           f"share an architecture start from the same weights, so a per-seed difference is the methods'; each "
           f"uni-modal model, trained on the rows where its modality is present, draws its own batch order (its "
           f"weights start as the fused models' encoder of that modality). Test rows: {n_rows}. "
           f"**Bold**: the best of each column. *n/a*: no row can be scored (a uni-modal model with its own "
           f"modality missing). The uni-modal rows are the *reference* for rows where only that modality is "
           f"present, not a ceiling.", "", _training_setting(config, summary), ""]
    out += _modalities_section(provenance.get("dataset", {}))
    if evidence:
        out += [f"In brackets: the 95% bootstrap interval ({_resampling(evidence)}; the same resamples for every method, "
                f"seeds averaged inside each). It covers the test rows drawn, not the training seeds: a retrained "
                f"model varies by the seed spread (±) on top of it.", ""]
    out += table_lines(summary, methods, main_columns(summary, metric), intervals=evidence_intervals(evidence)) + [""]
    out += ["Protocols:", ""] + [f"- `{p}`: {get_protocol(p).describe(p)}" for p in dict.fromkeys(s["protocol"] for s in summary)] + [""]
    patterns = pattern_columns(summary, metric)
    if patterns:
        out += ["## By presence pattern (`subsets`)", "",
                f"Test {name} in % with only the listed modalities present."]
        out += [""] + table_lines(summary, methods, patterns) + [""]
    out += _evidence_section(evidence, methods, name) + _calibration_section(summary, methods, has_reliability)
    out += _failure_section(summary, methods, metric, name) + _degraded_section(summary, methods, metric, name)
    out += _routing_section(fits)
    if has_figure:
        out += ["## Robustness to a missing modality", "",
                f"{name} against the share of test rows missing one modality (nested masks; mean ± std over seeds).",
                "", "![robustness](robustness.png)", ""]
    out += _bad_input_section(provenance.get("dataset", {}).get("bad_inputs"))
    out += _warnings_section(provenance.get("dataset", {}).get("warnings"))
    out += _fit_section(fits) + _provenance_section(provenance, config)
    return "\n".join(out) + "\n"


def _modalities_section(dataset: dict) -> list[str]:
    """How each column of the data was read (its kind, and the extractor), where the loader says."""
    text = modalities_text(dataset)
    return [f"Modalities, as read: {text}.", ""] if text else []


def modalities_text(dataset: dict) -> str:
    """``image (image, mobilenetv2), note (text, minilm), emb (features)``; empty when unknown."""
    kinds, extractors = dataset.get("modalities") or {}, dataset.get("extractors") or {}
    return ", ".join(f"{m} ({kind}" + (f", {extractors[m]['extractor']}" if m in extractors else "") + ")"
                     for m, kind in kinds.items())


def _rows_text(summary: Sequence[dict]) -> str:
    """The test rows, and how many each protocol scores (with observed gaps they differ)."""
    scored = {}
    for s in summary:
        if s["rate"] is None and s["pattern"] is None and get_protocol(s["protocol"]).kind != "sweep":
            scored[s["protocol"]] = max(scored.get(s["protocol"], 0), s["n_scored"])
    total = max((s.get("n_rows") or 0 for s in summary), default=0) or max(scored.values(), default=0)
    if len(set(scored.values())) <= 1:
        return str(total)
    return f"{total} (scored: " + ", ".join(f"`{p}` {n}" for p, n in scored.items()) + ")"


INTERVAL_TEXT = {  # records written before an interval was named used the expanded percentile for both
    None: "widened for few units (expanded percentile)",
    "korn-graubard": ("a value's interval: Clopper–Pearson at the effective number of rows, value × (1 − value) over "
                      "the resamples' variance, corrected for few units (Korn–Graubard); a difference's: the "
                      "resamples' percentiles widened for few units (expanded percentile)"),
}


def _resampling(evidence: Sequence[dict]) -> str:
    units = {e["unit"] for e in evidence}
    if "crossed" in units:
        unit = ("sources of the modalities present, each row weighted by the product of its sources' draws (a row "
                "made of two shared sources, such as a recording and the competing one mixed in: the pigeonhole "
                "bootstrap; rows, where no source is shared)")
    else:
        unit = ("test rows" if units == {"row"} else "groups of test rows that share a source" if units == {"group"} else
                "groups of test rows that share a source of a modality present (rows, where none is shared)")
    few = sorted({e["units"] for e in evidence if e.get("units") is not None and e["low"] is None and e["units"] < MIN_UNITS})
    none = (f"; no interval where fewer than {MIN_UNITS} units are scored ({', '.join(map(str, few))} here): none "
            f"would hold its level") if few else ""
    return f"{evidence[0]['resamples']} resamples of the {unit}; {INTERVAL_TEXT[evidence[0].get('interval')]}{none}"


def _evidence_section(evidence: Sequence[dict], methods: Sequence[str], name: str) -> list[str]:
    """Per presence pattern: is each method better than the uni-modal model of what is present?"""
    if not any(e["protocol"] == "subsets" for e in evidence):
        return []
    return ["### Better than the uni-modal model of what is present?", "",
            f"Test {name} in % with its 95% interval ({_resampling(evidence)}, seeds averaged inside each resample); "
            f"*retention*: over the same method's value with every modality present; *difference*: to the best "
            f"uni-modal model among the modalities present (chosen on these test rows, which favours it), with the "
            f"paired interval; *above* / *below*: the interval excludes zero, *tied*: it does not.", "",
            *evidence_table(evidence, methods), ""]


def _calibration_section(summary: Sequence[dict], methods: Sequence[str], has_reliability: bool) -> list[str]:
    """Per presence pattern: calibration before / after temperature scaling, and conformal sets."""
    if not any(s["metric"] == "ece" for s in summary):
        return []
    out = ["## Does it know when it cannot tell? (per presence pattern)", "",
           "Calibration on the test rows, means over seeds, before → after temperature scaling fitted on the "
           "validation split (`calibration` in the config: one temperature per pattern, one for all, or none). "
           "ECE: 15 equal-width bins of top-label confidence; NLL: mean negative log-likelihood; Brier: mean squared "
           "distance to the one-hot label.", "", *calibration_table(summary, methods), ""]
    if has_reliability:
        out += ["![reliability](reliability.png)", ""]
    return out + ["Split-conformal prediction sets at 90% coverage, fitted on the validation split: *per pattern* "
                  "(Mondrian: each presence pattern its own quantile, so coverage holds within each pattern) and "
                  "*pattern-blind* (one quantile for every pattern pooled). Test coverage % (target 90 ± 3), mean set "
                  "size, the share of rows answered with a single label and the accuracy on those (abstaining "
                  "otherwise). n/a: the pattern has too few validation rows for the coverage.", "",
                  *coverage_table(summary, methods), ""]


def _gate_off(summary: Sequence[dict]) -> str:
    """A sentence saying the gated columns are n/a, where no condition was scored with the gate."""
    if any(s["metric"].endswith(":gated") for s in summary):
        return ""
    return "**The gate was off in this run** (`gate: off`, or no uni-modal model of every modality): the gated columns are n/a. "


def _failure_section(summary: Sequence[dict], methods: Sequence[str], metric: str, name: str) -> list[str]:
    if not any(s["protocol"].startswith("fail:") for s in summary):
        return []
    return ["## Silent failures", "",
            f"Test {name} in % when a modality is present but broken (`fail:<m>@<kind>`: its raw input replaced on "
            "every test row; the model is not told). *gated*: the input gate treats an implausible input as missing "
            "(per modality: the input's mean, spread and principal coordinates, and its spread and roughness against a 4x "
            "tolerance; for pictures, their distance to the training pictures' subspace, pixel noise counted out; all "
            "read on the raw input where the data keeps one: a picture before its PCA projection, an extracted "
            "picture's thumbnail; an extracted text's characters against a character model of the training texts; the uni-modal encoder's features as `gate_detector` says, by default (`auto`) only for "
            "inputs that are no arrays; thresholded on clean validation rows; `gate_false_alarms` of them at most); "
            "*declared missing*: the same model told the modality is absent; *detected*: the share of broken inputs "
            "the gate ignored; *false alarms*: the share of clean test inputs it ignored, on every test row where the "
            "modality is present (`observed`; `full` where the data has no gaps). "
            + _gate_off(summary)
            + "A `stale` input (another row's) is in-distribution by construction: a gate on plausibility cannot see it.",
            "", *failure_table(summary, methods, metric), ""]


def _degraded_section(summary: Sequence[dict], methods: Sequence[str], metric: str, name: str) -> list[str]:
    if not any(s["protocol"].startswith("corrupt:") for s in summary):
        return []
    return ["## Degraded inputs", "",
            f"Test {name} in % when a modality is present but degraded (`corrupt:<m>@<kind>:<severity>`: each test "
            "row's raw input altered at severity 1 to 5, seeded, then through the modality's own preprocessing; the "
            "model is not told; `@<share>`: on that share of the rows only). *ungated*: the model uses every input; "
            "*gated*: the input gate treats an implausible input as missing; *soft*: each input weighted by its "
            "plausibility instead (1 at the gate's threshold, falling to 0 at "
            f"{SOFT_RAMP:g} clean spreads above it), the answer the mixture of the model's answers with and without "
            "each doubtful input; *declared*: the same model told the modality is absent (what ignoring it "
            "everywhere would give). *retained*: the soft mean over the same method's value on the same rows with "
            "their inputs clean (*clean*); "
            "*effective*: the soft mean minus the declared one (above 0: the degraded modality, as the soft gate "
            "uses it, still helps); the worst condition of each comparison is named. *ignored %*: the share of the "
            "rows scored whose input the hard gate ignored. "
            + _gate_off(summary), "",
            *degraded_summary(summary, methods, metric), "", "![degraded inputs](degraded.png)", "",
            *degraded_table(summary, methods, metric), ""]


def _warnings_section(notes: Sequence[str] | None) -> list[str]:
    if not notes:
        return []
    return ["## Warnings about the data", "", *[f"- {note}" for note in notes], ""]


def _bad_input_section(bad: dict | None) -> list[str]:
    """What validation found: every row is checked before training (policy ``on_bad_input``)."""
    if not bad or not (bad.get("marked_missing") or bad.get("dropped")):
        return []
    out = ["## Bad inputs", "",
           f"Every row was validated before training (policy `{bad['policy']}`): {bad['marked_missing']} input(s) "
           f"unreadable or not finite were treated as missing, {bad['dropped']} row(s) with nothing usable left were "
           f"dropped. The first {len(bad['first'])}:", "", "| split | where | id | modality | reason |", "|---|---|---|---|---|"]
    out += [f"| {b.get('split', '')} | {_place(b)} | {b.get('id') or ''} | {b.get('modality', '—')} | {b['reason']} |"
            for b in bad["first"]]
    return out + [""]


def _place(bad: dict) -> str:
    """A manifest row by its line (as an editor numbers it); an array row by its index in the split."""
    if "line" in bad:
        return f"line {bad['line']}"
    return f"index {bad['row']}" if "row" in bad else ""


def _training_setting(config: dict, summary: Sequence[dict]) -> str:
    """Which training data the models saw: MAP results mean different things in the two settings."""
    missing = config.get("train_missing") or {}
    if not missing:
        return ("Training data: as loaded, no modality removed (the paper's setting; for the MAP protocols this is "
                "the *train-full* variant).")
    parts = [f"both modalities, MAP's pattern ({100 * rate / 2:g}% of rows lack one, {100 * rate / 2:g}% the other)"
             if m == "both" else f"`{m}` from {100 * rate:g}% of rows" for m, rate in sorted(missing.items())]
    own = [p for p in dict.fromkeys(s["protocol"] for s in summary) if get_protocol(p).kind == "map"
           and missing.get(_map_modality(p)) == next(s["rate"] for s in summary if s["protocol"] == p)]
    label = f" This is MAP's own setting for {', '.join(f'`{p}`' for p in own)}." if own else ""
    return f"Training data: modalities removed from training and validation rows: {'; '.join(parts)}.{label}"


def _map_modality(protocol: str) -> str:
    return protocol[len("map:"):].split("@")[0]


def _routing_section(fits: Sequence[dict]) -> list[str]:
    routed = [f for f in fits if "pattern_choice" in f]
    if not routed:
        return []
    out = ["## UME-MMA: what each presence pattern uses", "",
           "Chosen on validation rows only. `ume-mma-paper`: the paper's rule, UME or MMA for every pattern, whichever "
           "has the better mean validation metric over `full` and each modality missing (a tie keeps UME). `ume-mma`: "
           "per pattern, among the uni-modal models of the present modalities, the ensemble and MMA (simplest first), "
           "a candidate is within reach when it is at most one standard error (of its paired bootstrap difference) "
           "below the best; the paper's choice stands while it is within reach, unless a simpler candidate within "
           "reach scores at least as well; out of reach, the simplest candidate within reach takes over.", "",
           "| method | seed | pattern | uses | validation % per candidate (± standard error of its gap to the best) |",
           "|---|---:|---|---|---|"]
    for f in routed:
        for pattern, choice in f["pattern_choice"].items():
            scores, errors = f["pattern_scores"].get(pattern, {}), f.get("pattern_se", {}).get(pattern, {})
            cells = ", ".join(f"{f['parts'].get(c, c)} {pct(scores[c])}" + (f" (±{100 * errors[c]:.1f})" if errors.get(c) else "")
                              for c in candidate_order(scores))
            out.append(f"| {f['method']} | {f['seed']} | {pattern} | **{choice}** | {cells or 'no validation rows'} |")
    out += ["", "The paper's rule, per seed (mean validation metric over `full` and each modality missing):", "",
            "| method | seed | UME role (val) | MMA role (val) | paper's choice |", "|---|---:|---|---|---|"]
    for f in routed:
        parts, scores = f["parts"], f["val_scores"]
        out.append(f"| {f['method']} | {f['seed']} | {parts['ume']} {pct(scores['ume'])} | {parts['mma']} "
                   f"{pct(scores['mma'])} | **{parts[f['selected']]}** |")
    weights = [f for f in fits if f.get("weight_fit")]
    if weights:
        out += ["", "Weighted ensemble: one weight per modality, fitted on validation negative log-likelihood "
                "(equal weights when the fit is no better):", "",
                "| method | seed | weights | validation NLL, equal → fitted |", "|---|---:|---|---|"]
        for f in weights:
            fit = f["weight_fit"]
            nll = (f"{fit['nll_equal']:.3f} → {fit['nll_fitted']:.3f}" if fit.get("nll_equal") is not None else "n/a")
            out.append(f"| {f['method']} | {f['seed']} | " + ", ".join(f"{m} {w:.2f}" for m, w in fit["weights"].items())
                       + f" | {nll}{' (' + fit['fallback'] + ')' if fit.get('fallback') else ''} |")
    return out + [""]


def _fit_section(fits: Sequence[dict]) -> list[str]:
    rows = [f for f in fits if "val_score" in f]
    if not rows:
        return []
    per_method = defaultdict(list)
    for f in rows:
        per_method[f["method"]].append(f)
    out = ["## Training", "", "Validation score behind checkpoint selection (uni-modal: rows with the modality; fused: "
           "mean over `full` and each modality missing) and the epoch kept, per seed.", "",
           "| method | validation % per seed | epoch kept / epochs run |", "|---|---|---|"]
    for method, fs in per_method.items():
        vals = ", ".join(pct(f["val_score"]) for f in fs)
        epochs = ", ".join(f"{f['selected_epoch']}/{f['epochs_run']}" if f["epochs_run"] else "not trained" for f in fs)
        out.append(f"| {method} | {vals} | {epochs} |")
    return out + [""]


def _provenance_section(provenance: dict, config: dict) -> list[str]:
    env = provenance.get("environment", {})
    out = ["## Provenance", ""]
    if provenance.get("dataset"):
        out += ["Data: `" + json.dumps(provenance["dataset"], sort_keys=True) + "`", ""]
    if env:
        packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v)
        out += [f"Device: {env.get('device')} ({env.get('device_name')}), {env.get('cpu_count')} CPUs, "
                f"{env.get('torch_threads')} torch threads. Git: {env.get('git_commit') or 'not a git checkout'}.",
                f"Packages: {packages}.", ""]
    stages = provenance.get("stages", [])
    if stages:
        total = sum(s["seconds"] for s in stages)
        peak = max((s["peak_rss_mb"] or 0) for s in stages)
        out += [f"Stages: {len(stages)}, {total:.1f} s in all, peak resident memory {peak:.0f} MB "
                f"(each stage in provenance.json)."]
        for c in provenance.get("commands", []):
            out.append(f"- `{c['command']}`: {c['seconds']:.1f} s (finished {c['finished']})")
        out.append("")
    out += ["Configuration: `config.yaml` in this folder."]
    return out


def plot_robustness(summary: Sequence[dict], metric: str, methods: Sequence[str], path: Path,
                    fits: Sequence[dict] = ()) -> Path | None:
    """Metric against missing rate, one line per method, one panel per swept modality; the
    uni-modal references dashed; one legend under the panels. When UME-MMA chose the same
    component on every seed, that component's line is marked as its choice instead of drawn twice."""
    sweeps = list(dict.fromkeys(s["protocol"] for s in summary if get_protocol(s["protocol"]).kind == "sweep"))
    if not sweeps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = _single_choice(fits)
    labels = {m: f"{reference_modality(m)} only (reference)" if reference_modality(m) else m for m in methods}
    if chosen and chosen in methods and "ume-mma" in methods:
        labels[chosen] += " = ume-mma (its choice on every seed)"
    drawn = [m for m in methods if not (chosen and chosen in methods and m == "ume-mma")]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(6 * len(sweeps), 4.5), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10")
    handles = {}
    for ax, sweep in zip(axes[0], sweeps):
        removed = sweep.split(":", 1)[1]
        for i, method in enumerate(drawn):
            if reference_modality(method) == removed:
                continue  # the model of the modality being removed is no reference here
            points = sorted((s for s in summary if s["protocol"] == sweep and s["method"] == method
                             and s["metric"] == metric and s["rate"] is not None and s["mean"] is not None),
                            key=lambda s: s["rate"])
            if not points:
                continue
            x = [p["rate"] for p in points]
            y = [100 * p["mean"] for p in points]
            err = [100 * p["std"] for p in points]
            style = "--" if reference_modality(method) else "-"
            (line,) = ax.plot(x, y, style, marker="o", markersize=3, label=labels[method], color=colours(i % 10),
                              linewidth=2.5 if method == chosen else 1.5)
            handles.setdefault(labels[method], line)
            ax.fill_between(x, [a - e for a, e in zip(y, err)], [a + e for a, e in zip(y, err)], alpha=0.12, color=colours(i % 10))
        ax.set_title(f"{removed} missing")
        ax.set_xlabel(f"share of test rows without {removed}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (%)")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(handles) - 1) // 3), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_degraded(summary: Sequence[dict], metric: str, methods: Sequence[str], path: Path) -> Path | None:
    """One panel per corrupted modality and kind: the metric of the main multi-modal method (UME-MMA
    where it ran) against severity, ungated, with the hard and the soft gate, and declared missing
    (mean ± std over seeds). ``None`` (and no file) without ``corrupt:`` conditions."""
    conditions = corruption_conditions(summary)
    fused = [m for m in methods if not reference_modality(m)]
    if not conditions or not fused:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    method = "ume-mma" if "ume-mma" in fused else fused[-1]
    cells = {(s["protocol"], s["metric"]): s for s in summary if s["method"] == method and s["pattern"] is None}
    columns = min(len(conditions), RELIABILITY_COLUMNS)
    rows = -(-len(conditions) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False, sharey=True)
    styles = {"": ("ungated", "-", "tab:grey"), ":gated": ("gated", "-", "tab:blue"), ":soft": ("soft gate", "-", "tab:green"),
              ":declared": ("declared missing", "--", "tab:red")}
    for ax, ((modality, kind), severities) in zip(axes.flat, conditions.items()):
        for suffix, (label, style, colour) in styles.items():
            points = [(s, cells.get((severities[s], metric + suffix))) for s in sorted(severities)]
            points = [(s, c) for s, c in points if c is not None and c["mean"] is not None]
            if points:
                x, y = [s for s, _ in points], [100 * c["mean"] for _, c in points]
                err = [100 * (c["std"] or 0) for _, c in points]
                ax.errorbar(x, y, yerr=err, fmt=style, marker="o", markersize=3, color=colour, label=label, capsize=2)
        ax.set_title(f"{modality}: {kind}", fontsize=9)
        ax.set_xticks(range(1, 6))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(conditions):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric} (%)")
    for ax in axes[-1]:
        ax.set_xlabel("severity")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(f"{method} on degraded inputs", fontsize=10)
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _single_choice(fits: Sequence[dict]) -> str | None:
    """The one method UME-MMA uses for every presence pattern on every seed, if there is one."""
    choices = {c for f in fits if f.get("method") == "ume-mma" for c in f.get("pattern_choice", {}).values()}
    return choices.pop() if len(choices) == 1 else None


RELIABILITY_COLUMNS = 3  # panels per row: 7 presence patterns (3 modalities) fit a 3 x 3 grid


def plot_reliability(reliability: Sequence[dict], methods: Sequence[str], path: Path) -> Path | None:
    """Reliability diagrams, one panel per presence pattern: accuracy against confidence (bins
    pooled over seeds) of the main fused method before and after temperature scaling, and of the
    uni-modal model of each modality present."""
    if not reliability:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fused = [m for m in methods if not reference_modality(m)]
    main = "ume-mma" if "ume-mma" in fused else (fused[0] if fused else None)
    patterns = list(dict.fromkeys(r["pattern"] for r in reliability))
    columns = min(len(patterns), RELIABILITY_COLUMNS)
    rows = -(-len(patterns) // columns)
    spare = len(patterns) < rows * columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.2 * rows + (0 if spare else 0.6)), squeeze=False)
    for ax in axes.flat[len(patterns):]:
        ax.set_visible(False)
    curves = [(main, False, "-", f"{main}"), (main, True, "-", f"{main}, temperature-scaled")]
    curves += [(m, False, "--", m) for m in methods if reference_modality(m)]
    for ax, pattern in zip(axes.flat, patterns):
        for i, (method, calibrated, style, label) in enumerate(curves):
            bins = _pooled_bins(reliability, method, pattern, calibrated)
            if bins is None or (reference_modality(method) and reference_modality(method) not in pattern.split("+")):
                continue
            keep = bins[0] > 0
            ax.plot(bins[1][keep] / bins[0][keep], bins[2][keep] / bins[0][keep], style, marker="o", markersize=3,
                    label=label, color=plt.get_cmap("tab10")(i))
        ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
        ax.set(title=f"{pattern} present", xlabel="confidence (top label)", xlim=(0, 1), ylim=(0, 1))
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if spare:  # the legend in the grid's last, empty panel
        panel = axes.flat[-1]
        panel.set_visible(True)
        panel.axis("off")
        panel.legend(handles, labels, loc="center", fontsize=9, frameon=False)
        fig.tight_layout()
    else:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.6 / (4.2 * rows + 0.6) + 0.04, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _pooled_bins(reliability: Sequence[dict], method: str, pattern: str, calibrated: bool):
    """(rows, summed confidence, correct) per bin, summed over seeds; None when absent."""
    import numpy as np

    rows = [r for r in reliability if r["method"] == method and r["pattern"] == pattern and r["calibrated"] == calibrated]
    if not rows:
        return None
    return tuple(np.sum([r[k] for r in rows], axis=0) for k in ("rows", "confidence", "correct"))
