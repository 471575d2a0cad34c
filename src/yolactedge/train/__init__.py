"""Training: prior matching, the YOLACT loss and the training loop (single process or torchrun/DDP).

    from yolactedge.train import train
    best = train("data/shapes", config="yolact_edge_demo", iters=3000, batch_size=8, out_dir="runs/demo")
"""
from .loss import YolactLoss, prepare_targets
from .match import MatchResult, encode, jaccard, match, match_batch, point_form
from .trainer import Schedule, load_train_state, resolve_data, train, validation_loss

__all__ = [
    "MatchResult", "Schedule", "YolactLoss", "encode", "jaccard", "load_train_state", "match", "match_batch",
    "point_form", "prepare_targets", "resolve_data", "train", "validation_loss",
]
