"""Datasets behind a registry; each factory returns :class:`Splits` (train / val / test, the
dataset's default encoders, and where the data came from)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..batch import MultiModalDataset
from ..encoders import EncoderSpec
from ..registry import Registry


@dataclass
class Splits:
    train: MultiModalDataset
    val: MultiModalDataset
    test: MultiModalDataset
    encoders: dict[str, EncoderSpec]  # the dataset's default encoders
    info: dict[str, Any] = field(default_factory=dict)  # provenance, shown in reports
    ids: dict[str, list[str]] = field(default_factory=dict)  # split -> sample ids (loaders with ids)
    inputs: dict[str, dict] = field(default_factory=dict)  # modality -> input spec (mmrobust.inputs); default: arrays

    def limit(self, rows: int | None) -> "Splits":
        """The first ``rows`` rows of each split (for quick runs); ``None`` keeps everything."""
        if rows is None:
            return self
        cut = {name: getattr(self, name).subset(range(min(rows, len(getattr(self, name))))) for name in ("train", "val", "test")}
        ids = {name: values[:rows] for name, values in self.ids.items()}
        return Splits(**cut, encoders=self.encoders, info={**self.info, "limit": rows}, ids=ids, inputs=self.inputs)


DATASETS: Registry[Splits] = Registry("dataset")

from . import avclips, avmnist, digits, manifest, mmimdb, food101, synthetic  # noqa: E402,F401  (register the built-in datasets)
from .synthetic import make_synthetic  # noqa: E402

__all__ = ["DATASETS", "Splits", "make_synthetic"]
