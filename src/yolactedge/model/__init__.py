"""The YOLACT-Edge network in PyTorch and its checkpoints."""
from .checkpoint import CheckpointError, load_state_dict_into, read_state_dict, remap_state_dict, save_checkpoint
from .temporal import TemporalMemory, VideoModeError, VideoStream, is_key_frame
from .yolact import TrainOutputs, YolactEdge, decode_boxes

__all__ = [
    "CheckpointError", "TemporalMemory", "TrainOutputs", "VideoModeError", "VideoStream", "YolactEdge", "decode_boxes",
    "is_key_frame", "load_state_dict_into", "read_state_dict", "remap_state_dict", "save_checkpoint",
]
