"""Training: prior matching, the YOLACT loss and the training loop (single process or torchrun/DDP).

    from yolactedge.train import train
    best = train("data/shapes", config="yolact_edge_demo", iters=3000, batch_size=8, out_dir="runs/demo")

Modules: `trainer` (Trainer, train), `settings` (what defines a run and what resume keeps), `schedule`,
`sampling` (data and the replayable batch stream), `distributed`, `state` (the files a run writes),
`validation`, `runlog`, `video` (train_video: the two video stages).
"""
from .loss import YolactLoss, prepare_targets
from .match import MatchResult, encode, jaccard, match, match_batch, point_form
from .sampling import resolve_data
from .schedule import Schedule
from .state import load_train_state
from .trainer import Trainer, train
from .validation import map_validator, validation_loss
from .video import train_video

__all__ = [
    "MatchResult", "Schedule", "Trainer", "YolactLoss", "encode", "jaccard", "load_train_state", "map_validator",
    "match", "match_batch", "point_form", "prepare_targets", "resolve_data", "train", "train_video", "validation_loss",
]
