"""The command line, thin: parse, build from the registries, call the library."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from .data import DATASETS
from .encoders import ENCODERS, EncoderSpec
from .experiment import run_experiment, summarize
from .masking import SWEEP_RATES
from .methods import METHODS, PAPER_METHODS
from .train import TrainConfig

PROTOCOLS = {
    "observed": "the data's own missingness",
    "full": "nothing missing beyond what is observed; rows with an observed gap are not scored",
    "miss:<m>": "modality m absent from every test row",
    "sweep:<m>": f"m absent from a nested share r of test rows, r in {list(SWEEP_RATES)}; summary: area",
    "map:<m>@<eta>": "MAP (Lee et al. 2023): m absent from a share eta of rows (default 0.7)",
    "map:both@<eta>": "MAP: eta/2 of rows lack one modality, eta/2 the other; none lose both",
    "subsets": "every non-empty subset of modalities present",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmrobust", description=__doc__)
    sub = parser.add_subparsers(required=True, dest="command")
    p_list = sub.add_parser("list", help="datasets, encoders, methods, protocols")
    p_list.set_defaults(func=cmd_list)
    p_run = sub.add_parser("run", help="the whole pipeline: Stage 1, every method, every protocol, every seed")
    p_run.add_argument("--dataset", default="synthetic", choices=DATASETS.names())
    p_run.add_argument("--methods", nargs="+", default=list(PAPER_METHODS))
    p_run.add_argument("--protocols", nargs="+", default=None, help="default: full, each miss:<m>, each sweep:<m>, subsets")
    p_run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p_run.add_argument("--epochs", type=int, default=20)
    p_run.add_argument("--device", default="auto")
    p_run.add_argument("--out", type=Path, default=None, help="run folder (default ./runs/<UTC time>-<dataset>)")
    p_run.set_defaults(func=cmd_run)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    for title, registry in (("datasets", DATASETS), ("encoders", ENCODERS), ("methods", METHODS)):
        print(f"{title}:")
        for name in registry.names():
            print(f"  {name:28s} {registry.describe(name)}")
    print("protocols:")
    for name, doc in PROTOCOLS.items():
        print(f"  {name:28s} {doc}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    splits = DATASETS.create(args.dataset)
    modalities = splits["train"].modalities
    encoders = {m: EncoderSpec("mlp", in_dim=int(splits["train"].inputs[m].shape[1])) for m in modalities}
    protocols = args.protocols or ["full", *[f"miss:{m}" for m in modalities], *[f"sweep:{m}" for m in modalities], "subsets"]
    out = args.out or Path("runs") / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{args.dataset}"
    if out.exists():
        print(f"error: run folder {out} already exists; choose another --out", file=sys.stderr)
        return 2
    results = run_experiment(
        methods=args.methods, encoders=encoders, protocols=protocols, seeds=args.seeds, dataset=args.dataset,
        train=splits["train"], val=splits["val"], test=splits["test"], out_dir=out,
        train_config=TrainConfig(epochs=args.epochs, device=args.device, progress=sys.stderr.isatty()),
    )
    _print_summary(summarize(results.records), modalities)
    print(f"results: {out / 'results.jsonl'}")
    return 0


def _print_summary(summary: list[dict], modalities: Sequence[str]) -> None:
    columns = ["full", *[f"miss:{m}" for m in modalities]]
    cells = {(s["method"], s["protocol"]): s for s in summary if s["rate"] is None and s["pattern"] is None
             and not s["metric"].startswith("area:") and s["metric"] in ("accuracy", "f1_macro")}
    methods = list(dict.fromkeys(s["method"] for s in summary))
    print(f"{'method':28s}" + "".join(f"{c:>18s}" for c in columns))
    for method in methods:
        row = [cells.get((method, c)) for c in columns]
        print(f"{method:28s}" + "".join(f"{_fmt(cell):>18s}" for cell in row))


def _fmt(cell: dict | None) -> str:
    if cell is None or cell["mean"] is None:
        return "n/a"
    return f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
