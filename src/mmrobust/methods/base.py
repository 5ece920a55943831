"""The method contract, in scikit-learn's vocabulary.

``__init__`` only stores hyper-parameters, each under its own name, so ``get_params`` can
return them (a method knows its own options); ``fit(train, val) -> self`` builds fresh
modules from the encoder specs; fitted attributes end in ``_``. A method says which rows it
can score (``scorable``): missingness is never inferred from its outputs. Evaluation goes through
``encode`` (once per row) and ``proba_from_encoded`` (once per presence mask), so every
protocol is applied at the fusion without re-running the encoders.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ..batch import Batch, MultiModalDataset, num_rows
from ..encoders import EncoderLike
from ..errors import ConfigError, InputError, NonFiniteOutputError
from ..metrics import default_metric
from ..runtime import resolve_device
from ..config import TrainConfig


class Method:
    name = "method"
    needs_stage1 = False

    def __init__(
        self,
        encoders: Mapping[str, EncoderLike],
        num_classes: int,
        *,
        task: str = "multiclass",
        seed: int = 0,
        train_config: TrainConfig | None = None,
        metric: str | None = None,
    ) -> None:
        if len(encoders) < 1:
            raise ConfigError("a method needs at least one encoder")
        self.encoders = dict(encoders)
        self.num_classes = int(num_classes)
        self.task = task
        self.seed = int(seed)
        self.train_config = train_config or TrainConfig()
        self.metric = metric or default_metric(task)
        self.input_modalities = sorted(encoders)  # inputs accepted (and ignored when unused)

    @property
    def modalities(self) -> list[str]:
        return sorted(self.encoders)

    @property
    def registry_name(self) -> str:
        """The name this method is registered under (``create_method(registry_name, **get_params())``)."""
        return self.name

    def get_params(self) -> dict[str, Any]:
        """The method's own hyper-parameters: the keyword-only arguments of the ``__init__`` of
        its class and of its parents, as stored (scikit-learn's ``get_params``). With the common
        arguments (encoders, num_classes, task, seed, train_config, metric) they rebuild the
        method. A subclass that fixes a parent's argument sets it in ``kwargs`` (so passing the
        same value again is harmless), never as a second explicit keyword."""
        names = {p.name for cls in type(self).__mro__ if issubclass(cls, Method) and cls is not Method
                 and "__init__" in vars(cls)
                 for p in inspect.signature(cls.__init__).parameters.values() if p.kind == p.KEYWORD_ONLY}
        return {name: getattr(self, name) for name in sorted(names)}

    def scorable(self, present: Mapping[str, Tensor]) -> Tensor:
        """Rows this method can score under ``present``: those with any of its modalities."""
        return torch.stack([torch.as_tensor(present[m]).bool().cpu() for m in self.modalities]).any(dim=0)

    @property
    def device(self) -> torch.device:
        return resolve_device(self.train_config.device)

    # --- to implement -------------------------------------------------------------------
    def fit(self, train: MultiModalDataset, val: MultiModalDataset | None = None, **context: Any) -> "Method":
        raise NotImplementedError

    def training_step(self, batch: Batch, epoch: int) -> dict[str, Tensor]:
        raise NotImplementedError(f"{self.name} has no training step")

    def encode(self, inputs: Mapping[str, Any], present: Mapping[str, Tensor]) -> Any:
        """Per-row outputs of every encoder on its present rows (computed once per row)."""
        raise NotImplementedError

    def encode_replacing(self, encoded: Any, modality: str, inputs: Mapping[str, Any], present: Mapping[str, Tensor]) -> Any:
        """``encoded`` (of ``present``) with ``modality`` encoded again from ``inputs``, the other
        modalities' outputs reused (a broken input of one modality); by default all again."""
        return self.encode(inputs, present)

    def proba_from_encoded(self, encoded: Any, present: Mapping[str, Tensor]) -> Tensor:
        """Probabilities ``N x C`` for a presence mask (a subset of the encoded one).

        Only the rows in ``scorable(present)`` mean anything; the others hold any value.
        """
        raise NotImplementedError

    def build_architecture(self) -> nn.Module:
        """The fitted model's module tree with fresh weights (to load saved weights into)."""
        raise NotImplementedError

    def state_tensors(self) -> dict[str, Tensor]:
        """The fitted weights (see :mod:`mmrobust.checkpoint`)."""
        return dict(self.model_.state_dict())

    def state_meta(self) -> dict:
        """The fitted attributes that are not weights (JSON-serialisable)."""
        return {"val_score": self.val_score_, "history": self.history_}

    def restore(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> "Method":
        """The inverse of ``state_tensors`` / ``state_meta``; returns self, fitted."""
        model = self.build_architecture()
        model.load_state_dict(dict(tensors))
        self.model_ = model.to(self.device).eval()
        self.val_score_, self.history_ = meta["val_score"], list(meta["history"])
        return self

    def answered_by(self, pattern: str) -> str:
        """What answers rows with this presence pattern (``audio+image``): the method itself; a
        router (UME-MMA) names the candidate it chose for the pattern."""
        return self.name

    def fit_summary(self) -> dict:
        """What the fit chose, for the run's records: validation score and selected epoch."""
        history = getattr(self, "history_", [])
        return {"val_score": getattr(self, "val_score_", None), "epochs_run": len(history),
                "selected_epoch": next((h["epoch"] for h in history if h.get("selected")), None)}

    # --- the public API, shared -------------------------------------------------------------
    def predict_proba(self, inputs: Mapping[str, Any], present: Mapping[str, Any] | None = None) -> np.ndarray:
        """Probabilities for rows with any subset of modalities present (``None`` = absent)."""
        present_t = complete_present(inputs, present, self.modalities, self.input_modalities)
        unusable = torch.nonzero(~self.scorable(present_t)).flatten().tolist()
        if unusable:
            raise InputError(
                f"rows {unusable[:5]}{' ...' if len(unusable) > 5 else ''} have none of the modalities "
                f"this {self.name} model uses ({', '.join(self.modalities)}) present"
            )
        proba = self.proba_from_encoded(self.encode(inputs, present_t), present_t)
        check_finite(proba, self, "prediction")
        return proba.numpy()

    def predict(self, inputs: Mapping[str, Any], present: Mapping[str, Any] | None = None) -> np.ndarray:
        proba = self.predict_proba(inputs, present)
        return (proba >= 0.5).astype(np.int64) if self.task == "multilabel" else proba.argmax(axis=1)

    def score(self, data: MultiModalDataset) -> float:
        """The method's metric on ``data`` with its own presence (rows it cannot use are skipped)."""
        from ..evaluation import evaluate
        from ..protocols import sample_masks

        (record,) = [r for r in evaluate(self, data, sample_masks("observed", data.present, 0)) if r["metric"] == self.metric]
        return record["value"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, modalities={self.modalities}, seed={self.seed})"


def check_finite(proba: Tensor, method: "Method", where: str) -> None:
    """A model's output must be finite on the rows it scores: a diverged model is an error, not n/a."""
    bad = torch.nonzero(~torch.isfinite(proba).all(dim=1)).flatten().tolist()
    if bad:
        raise NonFiniteOutputError(f"{method.name} (seed {method.seed}) gave NaN or infinite probabilities under "
                                   f"{where}, rows {bad[:5]}{' ...' if len(bad) > 5 else ''} of {len(proba)}")


def complete_present(
    inputs: Mapping[str, Any], present: Mapping[str, Any] | None, modalities: list[str], accepted: list[str]
) -> dict[str, Tensor]:
    """Presence for every modality a model uses: given, or True where an input is given."""
    unknown = set(inputs) - set(accepted)
    if unknown:
        raise InputError(f"inputs for unknown modalities {sorted(unknown)}; expected some of {accepted}")
    given = [x for x in inputs.values() if x is not None]
    if not given:
        raise InputError(f"no input given; the model uses {modalities}")
    n = num_rows(given[0])
    out = {}
    for m in modalities:
        if present is not None and present.get(m) is not None:
            p = torch.as_tensor(np.asarray(present[m]) if not isinstance(present[m], Tensor) else present[m]).bool().cpu()
        else:
            p = torch.full((n,), inputs.get(m) is not None, dtype=torch.bool)
        if p.shape != (n,):
            raise InputError(f"present[{m!r}] must have {n} rows, got shape {tuple(p.shape)}")
        if bool(p.any()) and inputs.get(m) is None:
            raise InputError(f"present[{m!r}] marks rows present but no input was given for {m!r}")
        if inputs.get(m) is not None and num_rows(inputs[m]) != n:
            raise InputError(f"input {m!r} has {num_rows(inputs[m])} rows, expected {n}")
        out[m] = p
    return out
