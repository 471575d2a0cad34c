"""`yolactedge demo`: the image demo on the shipped samples, and the video demo (`--model demo-video`) on a
synthetic clip in video mode, each building its int8 file once into the cache (slow: two int8 conversions)."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx2tf")
pytest.importorskip("ai_edge_litert")

from yolactedge.demo import CLIP_FRAMES, DEMO_KEYFRAME_INTERVAL, run_demo  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLACTEDGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_image_demo_on_the_samples(cache, tmp_path, capsys):
    from yolactedge.assets import SAMPLES_DIR

    summary = run_demo("demo", out_dir=str(tmp_path / "out"), threads=2, progress=False)
    assert summary["images"] == len(list(SAMPLES_DIR.iterdir())) and summary["detections"] > 0
    assert summary["agreement"].recall >= 0.9 and "key_ms" not in summary
    assert len(list((tmp_path / "out").iterdir())) == summary["images"]
    assert "video mode" not in capsys.readouterr().out


@pytest.mark.slow
def test_video_demo_runs_the_int8_pair_in_video_mode(cache, tmp_path, capsys):
    summary = run_demo("demo-video", out_dir=str(tmp_path / "out"), threads=2, progress=False)
    assert summary["images"] == CLIP_FRAMES and summary["detections"] > 0
    assert summary["key_ms"] > 0 and summary["warped_ms"] > 0
    assert summary["agreement"].recall >= 0.9  # int8 pair against the float video model on the same schedule
    assert (tmp_path / "out" / "video_00000.mp4").stat().st_size > 0
    out = capsys.readouterr().out
    assert f"a key frame every {DEMO_KEYFRAME_INTERVAL} frames" in out
    assert f"median of {CLIP_FRAMES // DEMO_KEYFRAME_INTERVAL} and" in out
    built = {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.tflite")}
    assert sorted(built) == ["demo_video_int8.tflite", "demo_video_int8_warp.tflite"]
    run_demo("demo-video", out_dir=str(tmp_path / "again"), threads=2, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.tflite")} == built  # cached, not rebuilt
