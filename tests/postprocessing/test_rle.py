"""Our NumPy RLE against pycocotools' C encoder: same strings, so results read the same in COCO tools."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yolactedge.postprocessing import rle

mask_utils = pytest.importorskip("pycocotools.mask", reason="pycocotools is the reference encoder")


def _reference(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


@st.composite
def masks_with_boxes(draw):
    height, width = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    density = draw(st.floats(0, 1))
    seed = draw(st.integers(0, 2**31))
    mask = np.random.default_rng(seed).random((height, width)) < density
    x1, x2 = sorted(draw(st.lists(st.integers(0, width), min_size=2, max_size=2)))
    y1, y2 = sorted(draw(st.lists(st.integers(0, height), min_size=2, max_size=2)))
    return mask, (x1, y1, x2, y2)


@settings(max_examples=300, deadline=None)
@given(masks_with_boxes())
def test_encode_matches_pycocotools_and_decodes_back(case):
    mask, _ = case
    ours = rle.encode(mask)
    assert ours == {"size": list(mask.shape), "counts": _reference(mask)}
    assert np.array_equal(rle.decode(ours), mask)


@settings(max_examples=300, deadline=None)
@given(masks_with_boxes())
def test_encode_crop_equals_encoding_the_full_frame(case):
    mask, (x1, y1, x2, y2) = case
    full = np.zeros_like(mask)
    full[y1:y2, x1:x2] = mask[y1:y2, x1:x2]
    crop = rle.encode_crop(mask[y1:y2, x1:x2], (x1, y1, x2, y2), mask.shape)
    assert crop["counts"] == _reference(full)


def test_large_counts_and_known_string():
    mask = np.zeros((1000, 1000), bool)
    mask[100:900, 300:301] = True  # one run of 800 after 300,100 zeros
    assert rle.encode(mask)["counts"] == _reference(mask)
    assert rle.run_lengths(mask.ravel(order="F")).tolist() == [300_100, 800, 699_100]


def test_decode_rejects_counts_of_the_wrong_size():
    with pytest.raises(ValueError, match="cover 4 pixels, not 3x3"):
        rle.decode({"size": [3, 3], "counts": rle.encode(np.ones((2, 2), bool))["counts"]})
