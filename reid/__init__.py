"""Re-ID baselines (IDE, Siamese), metric learning (XQDA, KISSME) and Market-1501 evaluation.

Tensors in, tensors and numbers out; only :mod:`reid.checkpoint` touches files.
"""

from reid.config import TrainConfig
from reid.evaluate import RankingResult, compute_distance, evaluate_ranking
from reid.metric_learning import KISSME, XQDA, Euclidean, MetricLearner, build_metric
from reid.models import IDENet, ReIDModelConfig, SiameseNet, build_reid_model
from reid.train import TrainResult, extract_features, load_trained_model, train_reid

__all__ = [
    "KISSME",
    "XQDA",
    "Euclidean",
    "IDENet",
    "MetricLearner",
    "RankingResult",
    "ReIDModelConfig",
    "SiameseNet",
    "TrainConfig",
    "TrainResult",
    "build_metric",
    "build_reid_model",
    "compute_distance",
    "evaluate_ranking",
    "extract_features",
    "load_trained_model",
    "train_reid",
]
