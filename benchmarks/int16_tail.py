"""What the imx93 graph's int16 box tail gives: the demo's box AP, and Vela's placement and estimate.

The int8 file's boxes output is stored on one 1/255 grid over the image (docs/int8-accuracy.md); `--target imx93`
ends its graph in int16 instead (`yolactedge.export.int16_tail`: each level's last ADD, the levels'
CONCATENATION and the output's DEQUANTIZE in int16, the hand-over a QUANTIZE int8 → int16 that Vela runs on the
Ethos-U). LiteRT cannot run that QUANTIZE, so AP is measured on the twin the export verifies (DEQUANTIZE +
QUANTIZE hand-overs: the same values), made here from the demo's default int8 file (the imx93 graph differs only
in its 1/std fold and, above 320, its FPN upsampling), and the real file goes through Vela beside the int8 one.

    python benchmarks/int16_tail.py --images 500 --interval 200

Writes benchmarks/results/int16_tail.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8_accuracy import calibration_folder, held_out_set  # noqa: E402
from results_file import write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--interval", type=int, default=200, help="paired bootstrap resamples (0: none)")
    parser.add_argument("--data", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--json-out", default=str(Path(__file__).parent / "results" / "int16_tail.json"))
    args = parser.parse_args(argv)

    from yolactedge.evaluate import compare, format_compare
    from yolactedge.export import export_model
    from yolactedge.export.int16_tail import with_int16_box_tail
    from yolactedge.export.tflite_file import inspect_tflite
    from yolactedge.export.vela import npu_placement, run_vela

    data = Path(args.data)
    val = held_out_set(data)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tmp)
        fp32 = export_model("demo", "tflite", precision="fp32", output=work / "fp32.tflite", progress=False).path
        int8 = export_model("demo", "tflite", calib=calibration_folder(data), output=work / "int8.tflite",
                            progress=False).path
        tail = work / "int8_int16_tail.tflite"
        tail.write_bytes(with_int16_box_tail(int8.read_bytes(), twin=False))
        twin = work / "int8_int16_tail_twin.tflite"
        twin.write_bytes(with_int16_box_tail(int8.read_bytes(), twin=True))
        placement = {}
        for name, path in (("int8", int8), ("int8 + int16 tail", tail)):
            compiled = run_vela(path, work / f"vela_{path.stem}")
            placement[name] = {**npu_placement(Path(compiled["path"]).read_bytes()),
                               "estimate": compiled.get("summary", {}).get("Estimated inference time")}
        twin_ops = inspect_tflite(twin)["op_histogram"]
        rows = compare([str(fp32), str(int8), str(twin)], val / "images", val / "annotations.json",
                       limit=args.images, num_threads=1, progress=False, resamples=args.interval)
    print(f"demo model at 320, first {args.images} held-out images, README calibration set")
    print(format_compare(rows, args.interval))
    print("Vela 5.2 (Ethos-U65-256) placement of the demo's int8 file, then with the int16 tail:")
    for name, report in placement.items():
        print(f"  {name}: {report}")
    print(f"the twin's operators: {twin_ops}")
    write_results(args.json_out, {
        "images": args.images, "resamples": args.interval, "vela": placement, "twin_ops": twin_ops,
        "rows": [{"file": Path(r.model).name, "box_ap": r.box_ap, "mask_ap": r.mask_ap,
                  "intervals": r.intervals} for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
