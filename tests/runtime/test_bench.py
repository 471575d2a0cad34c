"""`yolactedge bench`: one row per (model, threads), timed stages in order, and memory that is the model's own."""
import numpy as np

from yolactedge.bench import STAGES, benchmark, format_rows


def test_rows_per_model_and_thread_count(tiny_onnx):
    rows = benchmark([str(tiny_onnx)], threads=[1, 2], runs=3, warmup=1, image_size=(120, 160), progress=False)
    assert [(r.backend, r.threads, r.frame) for r in rows] == [("onnxruntime", 1, None), ("onnxruntime", 2, None)]
    for row in rows:
        assert row.input == "160x120"
        for stage in STAGES:
            assert 0 < row.min_ms[stage] <= row.median_ms[stage] <= row.p90_ms[stage]
    table = format_rows(rows)
    assert table.count("onnxruntime") == 2 and "RSS MB" in table


def test_peak_memory_is_the_benchmark_process_own(tiny_onnx):
    """A spawned process inherits its parent's ru_maxrss on Linux; the row must not report the parent's peak."""
    ballast = np.ones(1024 * 1024 * 1024 // 8)  # 1 GiB touched in this (parent) process
    (row,) = benchmark([str(tiny_onnx)], threads=[1], runs=2, warmup=0, image_size=(120, 160), progress=False)
    assert ballast.sum() > 0
    assert 10 < row.peak_rss_mb < 700


def test_a_video_model_gets_a_key_and_a_warped_row(tiny_video_checkpoint):
    rows = benchmark([str(tiny_video_checkpoint)], threads=[1], runs=2, warmup=1, image_size=(96, 96),
                     progress=False)
    assert [(r.backend, r.frame) for r in rows] == [("torch", "key"), ("torch", "warped")]
    assert [r.to_dict()["frame"] for r in rows] == ["key", "warped"]
    assert "tiny_video.pth [warped]" in format_rows(rows)
