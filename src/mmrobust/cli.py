"""The command line, thin: parse, load the config, call the pipeline.

    mmrobust run        the whole pipeline (Stage 1, every method, every protocol, every seed, report)
                        on a preset, or on your own data: --manifest data.csv --label genre
    mmrobust train      Stage 1 and every method, saved in a new run folder
    mmrobust evaluate   every protocol on a trained run folder
    mmrobust report     report.md and robustness.png of an evaluated run folder
    mmrobust predict    predictions from a run's model/, any subset of modalities
    mmrobust list       datasets, encoders, extractors, methods, protocols, presets
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .config import BAD_INPUT_POLICIES, RunConfig, config_differences, config_to_dict, list_presets, load_config
from .errors import ConfigError, MMRobustError

# torch and the rest load inside the commands that need them: `--help` and a bad command line
# answer at once (benchmarks/speed/RESULTS.md, "startup").

def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: join its process group
            from . import distributed

            distributed.init_from_env()
        return args.func(args)
    except (MMRobustError, OSError) as err:  # a bad config, file or input: one line; anything else is a bug
        print(f"error: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmrobust", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True, dest="command")
    for name, func, text in (("run", cmd_run, "the whole pipeline into a new run folder, ending with its report"),
                             ("train", cmd_train, "Stage 1 and every method, saved in a new run folder")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", default=None,
                       help=f"a preset ({', '.join(list_presets())}) or a YAML file (default: digits; manifest with --manifest)")
        p.add_argument("--manifest", type=Path, default=None,
                       help="your own data: a CSV / JSONL file, one row per sample, one column per modality")
        p.add_argument("--label", default=None, help="the manifest's label column (multi-label cells as a|b|c)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, typed (repeatable), e.g. --set train.epochs=3")
        p.add_argument("--out", type=Path, default=None, help="the run folder (default ./runs/<UTC time>-<dataset>)")
        p.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the config's)")
        p.add_argument("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N")
        p.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: half the cores; results depend on this number)")
        p.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="worker processes for independent seeds (default train.jobs, else as many as the cores "
                            "allow at the thread count); the records do not depend on it")
        p.add_argument("--on-bad-input", choices=BAD_INPUT_POLICIES, default=None,
                       help="a bad input (unreadable file, NaN, ...): stop naming it (error, the default) or treat "
                            "that modality of that row as missing (missing; counted in the report)")
        p.add_argument("--trust-code", action="store_true",
                       help="with --resume: build an encoder the run folder's config names by import path (runs that code)")
        p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue an interrupted run: finished stages are kept, an interrupted one resumes "
                            "from its last epoch; other flags must give the run's own config or be left out")
        p.set_defaults(func=func)
    for name, func, text in (("evaluate", cmd_evaluate, "every protocol on a trained run folder"),
                             ("report", cmd_report, "report.md and robustness.png of an evaluated run folder")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_dir", type=Path)
        if name == "evaluate":
            p.add_argument("--trust-code", action="store_true",
                           help="build an encoder the run folder's config names by import path (runs that code)")
            p.add_argument("--jobs", type=int, default=None, metavar="N",
                           help="worker processes for independent seeds (default: as for run)")
        p.set_defaults(func=func)
    p = sub.add_parser("prepare", help="build a dataset's arrays from its raw sources")
    prepare = p.add_subparsers(required=True, dest="dataset")
    p = prepare.add_parser("avmnist", help="AV-MNIST from MNIST (IDX) and the Free Spoken Digit Dataset (WAVs)")
    p.add_argument("--mnist", type=Path, required=True, help="folder with the MNIST IDX files (.gz or plain)")
    p.add_argument("--fsdd", type=Path, required=True, help="FSDD's folder of WAVs ({digit}_{speaker}_{index}.wav)")
    p.add_argument("--out", type=Path, required=True, help="a new folder for the arrays")
    p.add_argument("--pca-energy", type=float, default=None,
                   help="keep the leading components up to this share of the image energy (default: the published setting)")
    p.add_argument("--snr-db", type=float, default=None, help="white-noise SNR in dB (default: the published setting)")
    p.add_argument("--interference-db", type=float, default=None,
                   help="level of a competing recording of another digit, in dB below the target (default: the published setting)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_prepare_avmnist)
    p = sub.add_parser("predict", help="predictions from a saved model (a run's model/), any subset of modalities")
    p.add_argument("model", type=Path, help="a model folder (runs/<run>/model)")
    p.add_argument("--input", action="append", default=[], metavar="MODALITY=PATH_OR_TEXT",
                   help="one modality's input: a file (image, WAV, .npy) or a text; repeatable; leave a modality out "
                        "when it is missing")
    p.add_argument("--manifest", type=Path, default=None, help="a CSV / JSONL with one column per modality (and id)")
    p.add_argument("--out", type=Path, default=None, help="with --manifest: the predictions CSV to write")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--coverage", type=float, default=None, metavar="SHARE",
                   help="also give the conformal label set that holds the true label with this probability (e.g. 0.9), "
                        "calibrated for the presence pattern of each input")
    p.add_argument("--abstain", action="store_true", help="with --coverage: answer unsure when the set is not a single label")
    p.add_argument("--gate", choices=["on", "off"], default="on",
                   help="the model's input gate: treat an implausible input as missing (on, the default) or not")
    p.add_argument("--trust-code", action="store_true",
                   help="load a model whose encoder is named by import path (a user's own: runs that code)")
    p.add_argument("--on-bad-input", choices=BAD_INPUT_POLICIES, default="error",
                   help="with --manifest: a bad cell stops naming its row (error), or that modality is dropped "
                        "for the row (missing; a row with nothing usable gets an empty label)")
    p.set_defaults(func=cmd_predict)
    sub.add_parser("list", help="datasets, encoders, extractors, methods, protocols, presets").set_defaults(func=cmd_list)
    return parser


def cmd_prepare_avmnist(args: argparse.Namespace) -> int:
    from . import pipeline
    from .data.avmnist import AVMNIST_INTERFERENCE_DB, AVMNIST_PCA_ENERGY, AVMNIST_SNR_DB, prepare_avmnist

    meta = prepare_avmnist(args.mnist, args.fsdd, args.out, pca_energy=_given(args.pca_energy, AVMNIST_PCA_ENERGY),
                           snr_db=_given(args.snr_db, AVMNIST_SNR_DB),
                           interference_db=_given(args.interference_db, AVMNIST_INTERFERENCE_DB), seed=args.seed,
                           log=pipeline.stderr_log)
    print(f"prepared: {args.out} ({meta['pca']['components']} PCA components, {100 * meta['pca']['energy_kept']:.1f}% "
          f"of the image energy kept); use --set data.name=avmnist --set data.root={args.out}")
    return 0


def _given(value, default):
    return default if value is None else value


def _config(args: argparse.Namespace) -> RunConfig:
    overrides = _manifest_overrides(args) + list(args.set)
    if args.seeds is not None:
        overrides.append(f"seeds={list(args.seeds)}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    if args.threads is not None:
        overrides.append(f"train.threads={args.threads}")
    if args.on_bad_input is not None:
        overrides.append(f"data.on_bad_input={args.on_bad_input}")
    config = load_config(args.config or ("manifest" if args.manifest else "digits"), overrides)
    if sys.stderr.isatty() and "train.progress" not in " ".join(args.set):
        config.train.progress = True
    return config


def _manifest_overrides(args: argparse.Namespace) -> list[str]:
    if args.manifest is None:
        if args.label is not None:
            raise ConfigError("--label goes with --manifest")
        return []
    if args.label is None:
        raise ConfigError("--manifest needs --label COLUMN (the column holding each row's label)")
    return ["data.name=manifest", f"data.options.path={json.dumps(str(args.manifest.resolve()))}",
            f"data.options.label={json.dumps(args.label)}"]


def _jobs(args: argparse.Namespace) -> int | None:
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    return args.jobs


def _resume_dir(args: argparse.Namespace) -> Path:
    """The run folder to resume, after checking that the flags ask for its own config."""
    from . import pipeline

    run_dir = args.resume
    saved = config_to_dict(pipeline.read_config(run_dir))
    if args.out is not None and args.out.resolve() != run_dir.resolve():
        raise ConfigError(f"--resume {run_dir} writes into that folder; --out {args.out} names another")
    if any((args.config, args.set, args.seeds, args.device, args.threads, args.manifest, args.on_bad_input)):
        wanted = config_to_dict(_config(args))
        wanted["train"]["progress"] = saved["train"]["progress"]
        if wanted != saved:
            changed = ", ".join(config_differences(saved, wanted))
            raise ConfigError(f"--resume {run_dir}: the config differs from the run's own ({changed}); "
                              f"resume without those flags, or start a new run")
    return run_dir


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args) if args.resume is None else None  # a config error in a blink: before torch is imported
    from . import pipeline

    if args.resume is not None:
        report = pipeline.resume_all(_resume_dir(args), trust_code=args.trust_code, jobs=_jobs(args))
    else:
        report = pipeline.run_all(config, args.out, jobs=_jobs(args))
    print(f"report: {report}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    config = _config(args) if args.resume is None else None  # before torch is imported
    from . import pipeline

    resuming = args.resume is not None
    run_dir, splits = (_resume_dir(args), None) if resuming else pipeline.new_run(config, args.out)
    with pipeline.run_lock(run_dir):
        pipeline.train_run(run_dir, splits=splits, trust_code=args.trust_code or not resuming, jobs=_jobs(args))
    print(f"trained: {run_dir} (next: mmrobust evaluate {run_dir})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import pipeline

    if not (args.run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{args.run_dir}: not a run folder (no config.yaml)")
    with pipeline.run_lock(args.run_dir):
        pipeline.evaluate_run(args.run_dir, trust_code=args.trust_code, jobs=_jobs(args))
    print(f"results: {args.run_dir / 'results.jsonl'} (next: mmrobust report {args.run_dir})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(f"report: {write_report(args.run_dir)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predictor import Predictor

    predictor = Predictor.load(args.model, device=args.device, trust_code=args.trust_code)
    if args.manifest is not None:
        if args.out is None or args.input:
            raise ConfigError("--manifest needs --out FILE (and no --input)")
        path = predictor.predict_manifest(args.manifest, args.out, coverage=args.coverage, abstain=args.abstain,
                                          on_bad_input=args.on_bad_input, gate=args.gate == "on")
        print(f"predictions: {path}")
        return 0
    sample = {}
    for item in args.input:
        modality, sep, value = item.partition("=")
        if not sep or not modality:
            raise ConfigError(f"--input expects MODALITY=PATH_OR_TEXT, got {item!r}")
        sample[modality.strip()] = value or None
    if not sample:
        raise ConfigError(f"give at least one --input (this model takes {', '.join(predictor.modalities)})")
    prediction = predictor.predict(sample, coverage=args.coverage, abstain=args.abstain, gate=args.gate == "on")
    print(json.dumps(prediction.to_dict(), indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .methods import METHODS  # importing the members fills the registries
    from .data import DATASETS
    from .encoders import ENCODERS
    from .fusion import FUSIONS
    from .pretrained import EXTRACTOR_DOCS
    from .protocols import PROTOCOLS

    for title, registry in (("datasets", DATASETS), ("encoders", ENCODERS), ("methods", METHODS), ("fusions", FUSIONS)):
        print(f"{title}:")
        for name in registry.names():
            print(f"  {name:28s} {registry.describe(name)}")
    print("extractors (pre-trained, for manifest columns: data.options.extractors.<column>=NAME):")
    for name, doc in EXTRACTOR_DOCS.items():
        print(f"  {name:28s} {doc}")
    print("protocols:")
    for kind in PROTOCOLS.names():
        print(f"  {PROTOCOLS.get(kind).syntax:28s} {PROTOCOLS.describe(kind)}")
    print("presets (--config):")
    for name in list_presets():
        config = config_to_dict(load_config(name))
        print(f"  {name:28s} dataset {config['data']['name']}, seeds {config['seeds']}, {config['train']['epochs']} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
