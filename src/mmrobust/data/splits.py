"""What every dataset loader returns: train / val / test, the default encoders, where the data came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..batch import MultiModalDataset
from ..encoders import EncoderSpec


@dataclass
class Splits:
    train: MultiModalDataset
    val: MultiModalDataset
    test: MultiModalDataset
    encoders: dict[str, EncoderSpec]  # the dataset's default encoders
    info: dict[str, Any] = field(default_factory=dict)  # provenance, shown in reports
    ids: dict[str, list[str]] = field(default_factory=dict)  # split -> sample ids (loaders with ids)
    inputs: dict[str, dict] = field(default_factory=dict)  # modality -> input spec (mmrobust.inputs); default: arrays
    lines: dict[str, list[int]] = field(default_factory=dict)  # split -> each row's line in the manifest (manifests)

    def limit(self, rows: int | None) -> "Splits":
        """The first ``rows`` rows of each split (for quick runs); ``None`` keeps everything."""
        if rows is None:
            return self
        cut = {name: getattr(self, name).subset(range(min(rows, len(getattr(self, name))))) for name in ("train", "val", "test")}
        ids = {name: values[:rows] for name, values in self.ids.items()}
        lines = {name: values[:rows] for name, values in self.lines.items()}
        return Splits(**cut, encoders=self.encoders, info={**self.info, "limit": rows}, ids=ids, inputs=self.inputs,
                      lines=lines)
