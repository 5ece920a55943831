"""mmrobust: multi-modal classifiers that keep working when modalities go missing.

Implements UME-MMA (Li, Du et al., "What Makes for Robust Multi-Modal Models in the Face of
Missing Modalities?", arXiv 2310.06383, 2023), its baselines and the missing-modality
protocols. See docs/concepts.md for the contracts.

The names below load on first use (PEP 562), so that ``mmrobust --help`` and a bad command
line answer without importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

_HOMES = {
    "batch": ("Batch", "MultiModalDataset", "collate", "encode_present"),
    "data": ("DATASETS", "make_synthetic"),
    "encoders": ("ENCODERS", "EncoderSpec", "build_encoder"),
    "evaluation": ("evaluate", "selection_score"),
    "experiment": ("ExperimentResults", "run_experiment"),
    "records": ("summarize",),
    "fusion": ("ConcatFusion", "MeanFusion"),
    "masking": ("sample_modality_dropout", "sample_training_missing"),
    "protocols": ("ProtocolMask", "load_masks", "sample_masks", "save_masks"),
    "methods": ("METHODS", "PAPER_METHODS", "Method", "Stage1", "create_method", "list_methods", "train_stage1"),
    "models": ("LateFusionClassifier", "UnimodalClassifier"),
    "config": ("TrainConfig",),
    "calibration": ("Calibration",),
    "predictor": ("Prediction", "Predictor"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [*_HOME_OF, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _HOME_OF:
        value = getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)
        globals()[name] = value
        return value
    try:  # a submodule, as `mm.experiment` (attribute access on the package)
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise  # the submodule exists but lacks a dependency: say so
        raise AttributeError(f"module 'mmrobust' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
