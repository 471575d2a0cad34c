"""The YOLACT-Edge network in PyTorch and its checkpoints."""
from .checkpoint import CheckpointError, load_state_dict_into, read_state_dict, remap_state_dict, save_checkpoint
from .yolact import TrainOutputs, YolactEdge, decode_boxes

__all__ = [
    "CheckpointError", "TrainOutputs", "YolactEdge", "decode_boxes", "load_state_dict_into", "read_state_dict",
    "remap_state_dict", "save_checkpoint",
]
