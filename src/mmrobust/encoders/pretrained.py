"""A pre-trained extractor as a trainable encoder (fine-tuning); frozen features use ``mlp``."""
from __future__ import annotations

from torch import nn

from ..registry import ENCODERS


@ENCODERS.register("pretrained")
def pretrained(extractor: str) -> nn.Module:
    """A pre-trained extractor's network, trainable (input: the extractor's preprocessed batch)."""
    from ..pretrained import ExtractorError, get_extractor

    module = get_extractor(extractor).module()
    if not any(True for _ in module.parameters()):
        raise ExtractorError(f"extractor {extractor!r} has no trainable parameters (ONNX); it can only be frozen")
    return module.train().requires_grad_(True)
