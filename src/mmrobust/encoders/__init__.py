"""Encoders behind a registry (:data:`mmrobust.registry.ENCODERS`), one file per family. An encoder maps a modality's input to ``Tensor[B, out_dim]``.

Methods take encoder *specs* (a registry name and keyword arguments) or factories, never
live modules, so each method and seed builds fresh parameters.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

from torch import nn

from ..errors import ConfigError, UntrustedCodeError
from ..registry import ENCODERS
from ..runtime import seeded
from . import cnn, mlp, pretrained, resnet  # noqa: F401  (register the built-in encoders)

@dataclass(frozen=True)
class EncoderSpec:
    """A registry name and the keyword arguments of its factory."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __init__(self, name: str, **kwargs: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "kwargs", kwargs)

    def build(self) -> nn.Module:
        if ":" in self.name:  # a user's own factory, "package.module:factory"
            return import_factory(self.name)(**self.kwargs)
        return ENCODERS.create(self.name, **self.kwargs)

    def to_dict(self) -> dict:
        return {"name": self.name, **self.kwargs}


def import_factory(path: str) -> Callable[..., nn.Module]:
    """The callable named by ``package.module:factory``."""
    module_name, _, attr = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"encoder {path!r}: cannot import {attr!r} from {module_name!r} ({err})") from err
    if not callable(factory):
        raise ConfigError(f"encoder {path!r}: {attr!r} is not callable")
    return factory


EncoderLike = Union[EncoderSpec, Callable[[], nn.Module], str]


def import_paths(encoders: Mapping[str, Any]) -> dict[str, str]:
    """The encoders named by an import path (``package.module:factory``), by modality."""
    names = {m: spec.get("name") if isinstance(spec, Mapping) else getattr(spec, "name", spec) for m, spec in encoders.items()}
    return {m: name for m, name in names.items() if isinstance(name, str) and ":" in name}


def check_trusted(encoders: Mapping[str, Any], source: str, trust_code: bool) -> None:
    """A file someone else may have written (a model's ``config.json``, a run's ``config.yaml``)
    builds only registered encoders: an import path would import and call code it names, so it
    is refused unless the caller opts in, in the spirit of ``trust_remote_code``."""
    paths = import_paths(encoders)
    if paths and not trust_code:
        modality, name = next(iter(paths.items()))
        raise UntrustedCodeError(f"{source}: encoder {modality!r} is the import path {name!r}; building it runs the code "
                                 f"it names. Pass --trust-code (trust_code=True) only if you trust where this came from")


def build_encoder(spec: EncoderLike, modality: str = "?") -> nn.Module:
    """A fresh encoder from a spec, a registry name or a zero-argument factory."""
    if isinstance(spec, nn.Module):
        raise TypeError(
            f"encoder for {modality!r} is a live module; pass an EncoderSpec or a factory "
            f"(e.g. `lambda: MyEncoder()`) so every method and seed gets fresh parameters"
        )
    if isinstance(spec, str):
        spec = EncoderSpec(spec)
    module = spec.build() if isinstance(spec, EncoderSpec) else spec()
    if not isinstance(module, nn.Module) or not isinstance(getattr(module, "out_dim", None), int):
        raise TypeError(f"encoder for {modality!r} must be an nn.Module with an integer `out_dim`, got {type(module).__name__}")
    return module


def build_encoder_seeded(spec: EncoderLike, modality: str, seed: int) -> nn.Module:
    """Build under a fixed torch seed, without touching the caller's random state."""
    with seeded(seed):
        return build_encoder(spec, modality)

