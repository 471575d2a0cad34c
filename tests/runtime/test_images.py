"""Image and source loading: EXIF orientation, gray/RGBA/16-bit files, odd paths, folders, globs, video, errors."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolactedge.runtime.images import ImageError, as_rgb_uint8, expand_sources, iter_sources, load_image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write an image through cv2.imencode (so any path works); `array` is in OpenCV's channel order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, array)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def rgb_png(path: Path, rgb: np.ndarray) -> Path:
    return write_png(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def halves(height: int = 20, width: int = 40) -> np.ndarray:
    """RGB: left half red, right half blue."""
    image = np.empty((height, width, 3), np.uint8)
    image[:, : width // 2] = RED
    image[:, width // 2:] = BLUE
    return image


def assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and message
    for fragment in fragments:
        assert fragment in message


def test_colour_order_is_rgb(tmp_path):
    image = load_image(rgb_png(tmp_path / "halves.png", halves()))
    assert image.dtype == np.uint8 and image.shape == (20, 40, 3)
    assert tuple(image[0, 0]) == RED and tuple(image[0, -1]) == BLUE


def test_exif_orientation_is_applied(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    exif = pil.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    pil.fromarray(halves()).save(path, exif=exif, quality=98)
    stored = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    assert stored.shape[:2] == (20, 40)  # the pixels are stored landscape...

    image = load_image(path)
    assert image.shape == (40, 20, 3)  # ...and come back portrait, as a viewer shows them
    # Rotated clockwise, the left (red) half becomes the top half.
    assert np.abs(image[:18].astype(int) - RED).max() < 40
    assert np.abs(image[22:].astype(int) - BLUE).max() < 40


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))
    image = load_image(write_png(tmp_path / "gray.png", gray))
    assert image.shape == (5, 25, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_rgba_drops_alpha_and_keeps_colours(tmp_path):
    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[..., :3] = (30, 20, 10)  # B, G, R
    bgra[:, :3, 3] = 0  # fully transparent half: its colour is still what is stored
    bgra[:, 3:, 3] = 255
    image = load_image(write_png(tmp_path / "rgba.png", bgra))
    assert image.shape == (4, 6, 3)
    assert (image == np.array([10, 20, 30], np.uint8)).all()


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    values = (np.arange(64, dtype=np.uint16) * 1040).reshape(8, 8)  # 0 .. 65520
    image = load_image(write_png(tmp_path / "deep.png", values))
    assert image.dtype == np.uint8 and image.shape == (8, 8, 3)
    np.testing.assert_array_equal(image[..., 0], (values >> 8).astype(np.uint8))


def test_16_bit_colour_png(tmp_path):
    bgr16 = np.zeros((3, 3, 3), np.uint16)
    bgr16[..., 2] = 65535  # red
    image = load_image(write_png(tmp_path / "deep_colour.png", bgr16))
    assert tuple(image[1, 1]) == RED


def test_unicode_path_with_spaces(tmp_path):
    path = rgb_png(tmp_path / "фото с пробелами" / "画像 1 ü.png", halves())
    np.testing.assert_array_equal(load_image(path), halves())
    np.testing.assert_array_equal(load_image(str(path)), halves())


def test_large_image_has_no_float_copy(tmp_path):
    height, width = 3000, 4000
    path = tmp_path / "large.jpg"
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))
    path.write_bytes(data.tobytes())
    tracemalloc.start()
    try:
        image = load_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    # The decoded BGR and the RGB result (2 × 36 MB) plus the file; a float32 copy alone would be 144 MB.
    assert peak < 2.5 * height * width * 3


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"", "empty file"), (b"this is not an image", "cannot decode"), (None, "cannot decode")],
    ids=["empty", "text", "truncated-png"],
)
def test_unreadable_files_raise_one_line(tmp_path, content, fragment):
    path = tmp_path / "bad.png"
    if content is None:  # a real PNG cut in half
        ok, data = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        content = data.tobytes()[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageError) as exc:
        load_image(path)
    assert_one_line(exc, str(path), fragment)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError) as exc:
        load_image(tmp_path / "nope.jpg")
    assert_one_line(exc, "no such image file")
    with pytest.raises(ImageError) as exc:
        load_image(tmp_path)
    assert_one_line(exc, "is a folder")


def test_as_rgb_uint8_conversions():
    rgb = halves()
    assert as_rgb_uint8(rgb) is rgb
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for candidate in (gray, gray[..., None]):
        out = as_rgb_uint8(candidate)
        assert out.shape == (3, 4, 3) and (out == gray[..., None]).all()
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])
    np.testing.assert_array_equal(as_rgb_uint8(rgba), rgb)
    with pytest.raises(ImageError, match="uint8"):
        as_rgb_uint8(rgb.astype(np.float32))
    with pytest.raises(ImageError, match="shape"):
        as_rgb_uint8(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="list"):
        as_rgb_uint8([[1, 2]])


# --- iter_sources ------------------------------------------------------------------------------------------------

@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    for i, name in enumerate(["b.png", "a.jpg", "c.PNG"]):
        rgb_png(folder / name, np.full((6, 8, 3), i * 50, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    rgb_png(folder / "nested" / "d.png", np.zeros((6, 8, 3), np.uint8))
    return folder


def test_folder_is_sorted_and_not_recursive(image_folder):
    items = list(iter_sources(image_folder))
    assert [Path(name).name for name, _ in items] == ["a.jpg", "b.png", "c.PNG"]
    assert all(frame.shape == (6, 8, 3) and frame.dtype == np.uint8 for _, frame in items)
    assert int(items[1][1].mean()) == 0 and int(items[2][1].mean()) == 100


def test_glob_and_lists(image_folder):
    names = [Path(n).name for n, _ in iter_sources(str(image_folder / "*.png"))]
    assert names == ["b.png"]  # glob is case-sensitive on Linux
    names = [Path(n).name for n, _ in iter_sources(str(image_folder / "**" / "*.png"))]
    assert names == ["b.png", "d.png"]
    single = image_folder / "a.jpg"
    names = [Path(n).name for n, _ in iter_sources([single, str(image_folder / "c.PNG")])]
    assert names == ["a.jpg", "c.PNG"]


def test_expand_sources_lists_without_reading(image_folder):
    (image_folder / "clip.mp4").write_bytes(b"not opened by expand_sources")
    items = list(expand_sources([image_folder, "0", 3, image_folder / "notes.txt"]))
    assert [Path(i).name if isinstance(i, str) else i for i in items] == [
        "a.jpg", "b.png", "c.PNG", "clip.mp4", 0, 3, "notes.txt"]
    assert all(isinstance(i, (str, int)) for i in items)
    iterator = expand_sources([image_folder / "a.jpg", image_folder / "missing.jpg"])
    assert Path(next(iterator)).name == "a.jpg"  # the bad source fails only when reached
    with pytest.raises(ImageError, match="missing.jpg"):
        next(iterator)


def test_sources_are_decoded_lazily(image_folder):
    (image_folder / "z.png").write_bytes(b"corrupt")
    iterator = iter_sources(image_folder)
    assert Path(next(iterator)[0]).name == "a.jpg"  # the corrupt file has not been touched yet
    with pytest.raises(ImageError, match="z.png"):
        list(iterator)


def test_source_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [(tmp_path / "missing.jpg", "no such file"), (tmp_path / "empty", "no images"),
             (str(tmp_path / "*.jpg"), "matches no files")]
    for source, fragment in cases:
        with pytest.raises(ImageError) as exc:
            list(iter_sources(source))
        assert_one_line(exc, fragment)


def test_video_frames(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for i in range(5):
        writer.write(np.full((24, 32, 3), (0, 0, 40 * i), np.uint8))  # BGR: red ramps up
    writer.release()
    items = list(iter_sources(path))
    assert [name for name, _ in items] == [f"{path}#{i}" for i in range(5)]
    for i, (_, frame) in enumerate(items):
        assert frame.shape == (24, 32, 3)
        assert abs(int(frame[..., 0].mean()) - 40 * i) <= 6 and frame[..., 2].mean() < 6  # RGB order


def test_unopenable_video_and_camera(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ImageError) as exc:
        list(iter_sources(bad))
    assert_one_line(exc, "broken.mp4")
    with pytest.raises(ImageError) as exc:
        list(iter_sources("97"))  # no such camera in a test environment
    assert_one_line(exc, "camera97")
