"""Image-folder input pipeline: dlcli's `image_dir` source against
`keras.utils.image_dataset_from_directory` with its defaults.

A folder of JPEG photos (640x480, 4 class sub-folders, written once) is
read, decoded, resized to 224x224 and batched by 32, for one epoch after
another; only the pipelines run, no model. Both sides get the same image
size and color mode; everything else is each one's default (Keras:
shuffled, bilinear resize, parallel map; dlcli: shuffled file names, a
pre-flight check of every file, decoders picked per file). Throughput is
images per second over the second epoch (the first one is reported too,
with the set-up: listing the folder, and dlcli's pre-flight check), and,
as a figure that machine load disturbs less, images per CPU-second. Each
side runs in fresh processes in interleaved rounds (Keras, dlcli, ...); a
ratio is the median over rounds of each round's dlcli/Keras ratio
(per-pair median), printed with the load average.

Usage:
    python bench/bench_pipeline.py             # 2,000 images
    python bench/bench_pipeline.py --quick     # 300 images
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import alternate, child_env, load_average, machine, median, pair_ratio, run_json, table, verdict  # noqa: E402
from _common import write_result  # noqa: E402

TARGET = 1.5
IMAGE_SIZE = (224, 224)
PHOTO_SIZE = (640, 480)  # width, height of the files on disk
CLASSES = ("a", "b", "c", "d")


def make_folder(root: Path, n: int, size: tuple[int, int] = PHOTO_SIZE, quality: int = 90) -> Path:
    """n JPEG files in class sub-folders, photo-like (smooth shapes plus
    grain, so they compress like photos rather than like noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = size
    root.mkdir(parents=True, exist_ok=True)
    for c in CLASSES:
        (root / c).mkdir(exist_ok=True)
    low = rng.integers(0, 256, size=(n, 6, 8, 3), dtype=np.uint8)
    for i in range(n):
        base = Image.fromarray(low[i]).resize((w, h), Image.BICUBIC)
        grain = rng.integers(-12, 13, size=(h, w, 3))
        pixels = np.clip(np.asarray(base, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / CLASSES[i % len(CLASSES)] / f"img_{i:06d}.jpg", quality=quality)
    return root


def child(side: str, folder: str, epochs: int) -> None:
    """Run one pipeline for `epochs` epochs; print the timings as JSON."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401 - the import is not part of the set-up time

    t0 = time.perf_counter()
    if side == "dlcli":
        from dlcli.config import config_from_dict
        from dlcli.data import load_data

        cfg = config_from_dict({
            "data": {"source": "image_dir", "path": folder, "image_size": list(IMAGE_SIZE), "color_mode": "rgb",
                     "batch_size": 32, "validation_split": 0.0, "test_split": 0.0},
            "model": {"layers": ["Flatten"]},
        })
        ds = load_data(cfg).train
    else:
        import keras

        ds = keras.utils.image_dataset_from_directory(folder, image_size=IMAGE_SIZE, color_mode="rgb", verbose=False)
    setup = time.perf_counter() - t0
    times, cpu, counts = [], [], []
    for _ in range(epochs):
        t, c = time.perf_counter(), time.process_time()
        n = 0
        for x, _y in ds:
            n += int(x.shape[0])
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        counts.append(n)
    print(json.dumps({"setup_s": setup, "epoch_s": times, "epoch_cpu_s": cpu, "images": counts}))


def measure(side: str, folder: Path) -> dict[str, float]:
    r = run_json([sys.executable, __file__, "--child", side, "--folder", str(folder)], env=child_env())
    return {
        "steady_images_per_s": r["images"][-1] / r["epoch_s"][-1],
        "steady_images_per_cpu_s": r["images"][-1] / r["epoch_cpu_s"][-1],
        "first_epoch_images_per_s": r["images"][0] / (r["setup_s"] + r["epoch_s"][0]),
        "images": r["images"][-1],
    }


def run(quick: bool, repeats: int, workdir: Path, images: Optional[int] = None) -> dict[str, Any]:
    n = images or (300 if quick else 2000)
    t = time.perf_counter()
    folder = make_folder(workdir / "photos", n)
    made = time.perf_counter() - t
    runs = alternate(repeats, {"keras": lambda: measure("keras", folder), "dlcli": lambda: measure("dlcli", folder)})
    out: dict[str, Any] = {"machine": machine(), "quick": quick, "repeats": repeats, "images": n,
                           "photo_size": list(PHOTO_SIZE), "image_size": list(IMAGE_SIZE), "folder_written_s": round(made, 1)}
    for side in ("keras", "dlcli"):
        assert all(r["images"] == n for r in runs[side]), f"{side} did not read every image"
        out[side] = {
            "steady_images_per_s": [r["steady_images_per_s"] for r in runs[side]],
            "steady_images_per_cpu_s": [r["steady_images_per_cpu_s"] for r in runs[side]],
            "first_epoch_images_per_s": [r["first_epoch_images_per_s"] for r in runs[side]],
        }
    for key, figure in (("ratio", "steady_images_per_s"), ("cpu_ratio", "steady_images_per_cpu_s"),
                        ("first_epoch_ratio", "first_epoch_images_per_s")):
        out[key] = pair_ratio(out["dlcli"][figure], out["keras"][figure])
    out["load_average"] = load_average()
    out["target"] = TARGET
    out["verdict"] = verdict(out["ratio"], TARGET)
    return out


def report(r: dict[str, Any]) -> str:
    rows = [
        [what, f"{median(r['keras'][figure]):,.0f}", f"{median(r['dlcli'][figure]):,.0f}", f"{r[key]:.2f}x", target,
         r["verdict"] if key == "ratio" else ""]
        for what, figure, key, target in (
            ("steady epoch", "steady_images_per_s", "ratio", f">= {r['target']}x"),
            ("steady epoch, per CPU-second", "steady_images_per_cpu_s", "cpu_ratio", ""),
            ("first epoch + set-up", "first_epoch_images_per_s", "first_epoch_ratio", ""),
        )
    ]
    head = (f"{r['images']} JPEGs {r['photo_size'][0]}x{r['photo_size'][1]} -> {r['image_size'][0]}x{r['image_size'][1]}, "
            f"batch 32; {r['repeats']} interleaved round(s): images/s are medians, ratios per-pair medians\n")
    return head + f"{r['load_average']}\n" + table(rows, ["images/s", "image_dataset_from_directory", "dlcli image_dir", "dlcli/keras", "target", ""])


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="300 images instead of 2,000")
    p.add_argument("--images", type=int, help="images in the folder (default 2,000; quick 300)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3, quick 2)")
    p.add_argument("--workdir", help="where the image folder goes (default: a temporary folder)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--child", choices=("dlcli", "keras"), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.child, a.folder, a.epochs)
        return 0
    repeats = a.repeats or (2 if a.quick else 3)
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-pipeline-") as tmp:
        workdir = Path(a.workdir) if a.workdir else Path(tmp)
        result = run(a.quick, repeats, workdir, a.images)
    print(report(result))
    write_result(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
