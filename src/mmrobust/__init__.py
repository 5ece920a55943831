"""mmrobust: multi-modal classifiers that keep working when modalities go missing.

Implements UME-MMA (Li, Du et al., "What Makes for Robust Multi-Modal Models in the Face of
Missing Modalities?", arXiv 2310.06383, 2023), its baselines and the missing-modality
protocols. See docs/concepts.md for the contracts.
"""
from .batch import Batch, MultiModalDataset, collate, encode_present
from .data import DATASETS, make_synthetic
from .encoders import ENCODERS, EncoderSpec, build_encoder
from .evaluate import evaluate, selection_score
from .experiment import ExperimentResults, run_experiment
from .records import summarize
from .fusion import ConcatFusion, MeanFusion
from .masking import sample_modality_dropout, sample_training_missing
from .protocols import ProtocolMask, load_masks, sample_masks, save_masks
from .methods import METHODS, PAPER_METHODS, Method, Stage1, create_method, list_methods, train_stage1
from .models import LateFusionClassifier, UnimodalClassifier
from .train import TrainConfig

from .predictor import Prediction, Predictor
from .version import __version__

__all__ = [
    "Batch", "MultiModalDataset", "collate", "encode_present", "DATASETS", "make_synthetic", "ENCODERS",
    "EncoderSpec", "build_encoder", "evaluate", "selection_score", "ExperimentResults", "run_experiment",
    "summarize", "ConcatFusion", "MeanFusion", "ProtocolMask", "load_masks", "sample_masks",
    "sample_modality_dropout", "sample_training_missing", "save_masks", "METHODS", "PAPER_METHODS", "Method",
    "Stage1", "create_method", "list_methods", "train_stage1", "LateFusionClassifier", "UnimodalClassifier",
    "TrainConfig", "Prediction", "Predictor", "__version__",
]
