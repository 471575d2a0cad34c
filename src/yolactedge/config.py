"""Model configurations as data, and the registry of named presets.

A preset differs from the base config in a few fields only (backbone, widths, input size, classes).
Shapes follow from these numbers: at input 550 with 81 classes the raw outputs are exactly the model card's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

# COCO's category ids for the 80 contiguous classes (the dataset skips some ids up to 90).
COCO_CATEGORY_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)

# YouTube-VIS 2019's 40 classes, the class list of the original's video checkpoints.
YOUTUBE_VIS_CLASSES: tuple[str, ...] = (
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake", "monkey",
    "hand", "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle", "bear", "motorbike",
    "giraffe", "leopard", "fox", "deer", "owl", "surfboard", "airplane", "truck", "zebra", "tiger",
    "elephant", "snowboard", "boat", "shark", "mouse", "frog", "eagle", "earless_seal", "tennis_racket",
)

BACKBONES = ("mobilenetv2", "resnet50", "resnet101")

# Pixel statistics of the original implementation, in RGB order (its config stores them as BGR).
PIXEL_MEAN = (123.68, 116.78, 103.94)
PIXEL_STD = (58.40, 57.12, 57.38)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides the network's shape.

    `num_classes` counts the background class, as the original does (81 for COCO).
    `pred_scales` are anchor sides in pixels at `input_size`, one per pyramid level P3..P7.
    `video` adds the original's temporal modules (flow net, SPA), so non-key frames can be warped from a key frame.
    `carry_protos` (ours, not the original's; video only) makes warped frames warp the key frame's prototypes with
    the same flow instead of running the protonet, so that warping pays for MobileNetV2 (measured faster but too
    inaccurate so far: docs/export.md).
    """

    name: str
    backbone: str = "mobilenetv2"
    num_classes: int = 81
    input_size: int = 550
    fpn_channels: int = 256
    proto_channels: int = 256
    mask_dim: int = 32
    pred_scales: tuple[int, ...] = (24, 48, 96, 192, 384)
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)
    class_names: tuple[str, ...] = field(default=COCO_CLASSES, repr=False)
    video: bool = False
    carry_protos: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {', '.join(BACKBONES)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must count background plus at least one class, got {self.num_classes}")
        if self.input_size < 32:
            raise ValueError(f"input_size must be at least 32, got {self.input_size}")
        if self.video and self.input_size < 33:
            # The warp needs P5 (input / 32, rounded up) at least 2x2.
            raise ValueError(f"video mode needs input_size of at least 33, got {self.input_size}")
        if self.carry_protos and not self.video:
            raise ValueError(f"carry_protos needs a video model; {self.name} has no flow net to warp prototypes with")
        if len(self.class_names) != self.num_classes - 1:
            raise ValueError(
                f"{len(self.class_names)} class names given for {self.num_classes - 1} foreground classes"
            )

    @property
    def num_anchors(self) -> int:
        return len(self.aspect_ratios)

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed; class names follow a class-count change when not given, and an image
        model (video=False) carries no prototypes."""
        if changes.get("video") is False:
            changes.setdefault("carry_protos", False)
        if "num_classes" in changes and "class_names" not in changes:
            n = changes["num_classes"] - 1
            names = self.class_names if len(self.class_names) == n else tuple(f"class{i}" for i in range(n))
            changes["class_names"] = names
        return dataclasses.replace(self, **changes)

    def at_input_size(self, size: int) -> ModelConfig:
        """This config at input `size`: anchor sides scale with the input, so they cover the same image share."""
        if size == self.input_size:
            return self
        scale = size / self.input_size
        return self.replace(input_size=int(size), pred_scales=tuple(round(s * scale) for s in self.pred_scales))


DEMO_CLASSES: tuple[str, ...] = ("circle", "triangle", "square", "star", "ring", "cross")

PRESETS: dict[str, ModelConfig] = {
    "yolact_edge_mobilenetv2": ModelConfig(name="yolact_edge_mobilenetv2", backbone="mobilenetv2"),
    "yolact_edge_resnet50": ModelConfig(name="yolact_edge_resnet50", backbone="resnet50"),
    "yolact_edge": ModelConfig(name="yolact_edge", backbone="resnet101"),
    # Video (temporal feature transfer) presets of the original: YouTube-VIS classes, flow net and SPA. The
    # original's yolact_edge_vid_trainflow(_resnet50) configs build the same modules: their checkpoints load here too.
    "yolact_edge_vid": ModelConfig(
        name="yolact_edge_vid", backbone="resnet101", num_classes=41, class_names=YOUTUBE_VIS_CLASSES, video=True
    ),
    "yolact_edge_vid_resnet50": ModelConfig(
        name="yolact_edge_vid_resnet50", backbone="resnet50", num_classes=41, class_names=YOUTUBE_VIS_CLASSES, video=True
    ),
    # Ours, the original has no MobileNetV2 video config: same modules, the partial backbone ends at C3 (layers.3).
    # Its backbone after C3 costs less than the flow net and SPA: on a CPU thread its warped frames take longer
    # than its key frames (benchmarks/bench_temporal.py).
    "yolact_edge_vid_mobilenetv2": ModelConfig(
        name="yolact_edge_vid_mobilenetv2", backbone="mobilenetv2", num_classes=41, class_names=YOUTUBE_VIS_CLASSES,
        video=True,
    ),
    # Small enough to train on a 2-core CPU: same family and export contract, narrower and smaller input.
    "yolact_edge_demo": ModelConfig(
        name="yolact_edge_demo",
        backbone="mobilenetv2",
        num_classes=len(DEMO_CLASSES) + 1,
        input_size=320,
        fpn_channels=64,
        proto_channels=64,
        pred_scales=(14, 28, 56, 112, 224),
        class_names=DEMO_CLASSES,
    ),
}
DEFAULT_PRESET = "yolact_edge_mobilenetv2"


def config_to_dict(config: ModelConfig) -> dict:
    data = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def config_from_dict(data: dict) -> ModelConfig:
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}")
    return ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(list_presets())}") from None
