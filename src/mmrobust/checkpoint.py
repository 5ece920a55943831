"""Fitted methods on disk: safetensors weights with JSON metadata, written atomically.

No pickle: loading never executes code from the file.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import ModelFileError
from .files import atomic_path
from .methods import Method

FORMAT = "mmrobust.method/1"


def save_method(method: Method, path: str | Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in method.state_tensors().items()}
    meta = {"format": FORMAT, "name": method.name, "seed": method.seed, "state": method.state_meta()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"mmrobust": json.dumps(meta, default=float)})


def load_method(method: Method, path: str | Path) -> Method:
    """Restore an unfitted ``method`` (built from the same config) from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved model (was `mmrobust train` run for this folder?)")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("mmrobust", "{}"))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable safetensors file ({err})") from err
    if meta.get("format") != FORMAT or meta.get("name") != method.name or meta.get("seed") != method.seed:
        raise ModelFileError(f"{path}: holds {meta.get('name')!r} of seed {meta.get('seed')!r} "
                         f"({meta.get('format')!r}), expected {method.name!r} of seed {method.seed}")
    try:
        return method.restore(tensors, meta["state"])
    except ModelFileError as err:
        raise ModelFileError(f"{path}: {err}") from err
    except RuntimeError as err:  # missing, unexpected or mis-shaped weights
        raise ModelFileError(f"{path}: the weights do not fit {method.name} as configured ({err})") from err
