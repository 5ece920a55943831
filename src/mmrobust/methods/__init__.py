"""Methods behind a registry: ``create_method(name, encoders=..., num_classes=..., seed=...)``."""
from __future__ import annotations

from functools import partial
from typing import Any

from ..registry import METHODS, PAPER_METHODS
from .base import Method, complete_present
from .distill import FullRowDistillation, UniModalTeacher, UnimodalDistillation
from .fused import UME, FusedMethod
from .ogm_ge import OGMGE, OGMGEAuthors
from .proxy import ProxyMethod
from .ume_mma import UmeMma
from .unimodal import Stage1, UnimodalMethod, train_stage1

METHODS.register("unimodal", UnimodalMethod, doc="the uni-modal model of one modality (Stage 1); the reference when only it is present")
METHODS.register("ume", UME, doc="Uni-Modal Ensemble: mean of the Stage-1 logits over present modalities")
METHODS.register("mma", partial(FusedMethod, init="unimodal", augment=True, name="mma"),
                 doc="Missing Modality Adaptation: late fusion from Stage 1, fine-tuned with modality dropout")
METHODS.register("ume-weighted", partial(UME, fusion="weighted", name="ume-weighted"),
                 doc="Uni-Modal Ensemble with one weight per modality, fitted on validation negative log-likelihood")
METHODS.register("ume-mma", UmeMma,
                 doc="per presence pattern, the paper's choice unless a uni-modal model, weighted UME or MMA beats it "
                     "by more than a validation standard error (then the simplest within one of the best)")
METHODS.register("ume-mma-paper", partial(UmeMma, selection="paper", parts={"ume": "ume", "mma": "mma"}, name="ume-mma-paper"),
                 doc="the paper's rule: UME or MMA, whichever has the better validation selection score")
METHODS.register("ume-mma-kd", partial(UmeMma, parts={"ume": "ume-weighted", "mma": "kd-full"}, name="ume-mma-kd"),
                 doc="ume-mma with MMA fine-tuned by self-distillation (kd-full) in the MMA role")
METHODS.register("late-fusion", partial(FusedMethod, name="late-fusion"),
                 doc="late fusion (presence-normalised mean of logits), joint training from scratch")
METHODS.register("late-fusion-concat", partial(FusedMethod, fusion="concat", name="late-fusion-concat"),
                 doc="late fusion by concatenation (zeros in missing slots), joint training from scratch")
METHODS.register("late-fusion-dropout", partial(FusedMethod, augment=True, name="late-fusion-dropout"),
                 doc="late fusion from scratch with modality dropout (augmentation alone)")
METHODS.register("late-fusion-unimodal-init", partial(FusedMethod, init="unimodal", name="late-fusion-unimodal-init"),
                 doc="late fusion initialised from Stage 1, fine-tuned without augmentation (initialisation alone)")

METHODS.register("missing-token", partial(FusedMethod, fusion="concat", fusion_options={"missing": "learned"},
                                          init="unimodal", augment=True, name="missing-token"),
                 doc="concat late fusion from Stage 1, a learned vector per modality in absent slots, modality dropout")
METHODS.register("proxy", ProxyMethod, doc="absent slots filled by features predicted from the present ones (CMPT/U2A), from Stage 1")
METHODS.register("umt", UniModalTeacher, doc="Uni-Modal Teacher: students from scratch, features pulled to Stage 1's (Du et al. 2023)")
METHODS.register("umt-dropout", partial(UniModalTeacher, augment=True, name="umt-dropout"),
                 doc="UMT trained with modality dropout (its paper trains on full inputs only)")
METHODS.register("kd-unimodal", UnimodalDistillation, doc="student distilled from each present modality's Stage-1 logits (KDD 2020)")
METHODS.register("kd-full", FullRowDistillation, doc="self-distillation: the full row teaches its dropped-out copy (SMIL), from Stage 1")
METHODS.register("ogm-ge", OGMGE, doc="on-the-fly gradient modulation of the dominant modality, with noise (CVPR 2022)")
METHODS.register("ogm-ge-authors", OGMGEAuthors,
                 doc="OGM-GE as its authors' loop runs it: concat split-weight scores, conv kernels, noise on every encoder, SGD")
METHODS.register("ume-entropy", partial(UME, fusion="entropy", name="ume-entropy"),
                 doc="Stage-1 ensemble weighted per row by confidence exp(H_max - H_m) (MLA's test-time fusion)")

BASELINE_METHODS = ("missing-token", "proxy", "umt", "kd-unimodal", "kd-full", "ogm-ge", "ogm-ge-authors", "umt-dropout",
                    "ume-entropy")
METHOD_GROUPS = {"paper": PAPER_METHODS, "baselines": BASELINE_METHODS,
                 "comparison": PAPER_METHODS + BASELINE_METHODS + ("ume-mma-kd",)}


def create_method(name: str, /, **kwargs: Any) -> Method:
    """An unfitted method: ``create_method("mma", encoders=..., num_classes=10, seed=0)``."""
    return METHODS.create(name, **kwargs)


def list_methods() -> list[str]:
    return METHODS.names()


__all__ = ["METHODS", "PAPER_METHODS", "BASELINE_METHODS", "METHOD_GROUPS", "Method", "FusedMethod", "UME", "UmeMma", "UnimodalMethod",
           "Stage1", "train_stage1", "create_method", "list_methods", "complete_present"]
