"""NumPy post-processing: raw YOLACT-Edge outputs → `Detections` (NMS, boxes in pixels, full-resolution masks).

Modules: `nms` chooses detections, `masks` assembles them, `rle` encodes them for COCO, `pipeline` composes them.
The package is named apart from its main function so that `yolactedge.postprocess` is always the function.
"""
from .detections import Detections
from .nms import NMS_MODES, NmsMode
from .pipeline import postprocess

__all__ = ["Detections", "NMS_MODES", "NmsMode", "postprocess"]
