"""One small generic registry, and every registry of the library.

Each member registers itself where it is defined (``@DATASETS.register("name")`` in its own file, or
one line in its package's ``__init__``); the packages import their members, so importing
``mmrobust`` fills every registry. Nothing here imports a member: no import loops.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories: ``register`` / ``create`` / ``names``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None, doc: str | None = None):
        """Register ``factory`` under ``name``; usable as a decorator."""

        def add(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = fn
            self._docs[name] = doc if doc is not None else _first_line(fn.__doc__)
            return fn

        return add(factory) if factory is not None else add

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def create(self, name: str, /, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def describe(self, name: str) -> str:
        self.get(name)
        return self._docs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._factories


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


DATASETS: Registry = Registry("dataset")  # name -> factory(**options, bad_inputs=..., device=...) -> Splits
ENCODERS: Registry = Registry("encoder")  # name -> factory(**kwargs) -> nn.Module with out_dim
METHODS: Registry = Registry("method")  # name -> Method class (or partial) taking encoders, num_classes, ...
FUSIONS: Registry = Registry("fusion")  # name -> Fusion class (mmrobust.fusion)
PROTOCOLS: Registry = Registry("protocol")  # kind -> Protocol (mmrobust.masking)


# the paper's methods and this project's UME-MMA beside the paper's rule (the default run): names
# only, so that the configuration needs no torch
PAPER_METHODS = ("unimodal", "late-fusion", "late-fusion-concat", "late-fusion-dropout",
                 "late-fusion-unimodal-init", "ume", "ume-weighted", "mma", "ume-mma-paper", "ume-mma")
