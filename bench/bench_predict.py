"""Predict throughput: dlcli against plain Keras, images and CSV rows.

Images (always): a generated folder of IMAGES JPEG and PNG files (about
1.25x the model's input size, +-25%), a small convnet trained by dlcli
(one epoch on a few images: the weights do not matter, the work per image
does). In one process, over the same files, each round times:

  keras tf.data   a tuned plain-Keras script: tf.data decode + resize in
                  parallel (AUTOTUNE), batched, prefetched, model.predict
  keras image_dataset_from_directory
                  keras.utils.image_dataset_from_directory(labels=None,
                  shuffle=False) into model.predict
  dlcli           dlcli.prediction.predict_inputs(run, [folder]): the run's
                  preprocessing, the per-file pre-flight check, error rows,
                  every result dict consumed; the run is opened once,
                  outside the timing, as the scripts load their model once

Every side is warmed up once (tracing, file cache), then the rounds
interleave the sides (their order rotating), and each ratio is the median
over rounds of that round's dlcli / Keras images per second (per-pair
medians, never best-of), in wall time and in CPU time (the process's user
+ system time, all threads), with the 1-minute load average of each round.
dlcli's probabilities are checked against the tf.data script's once.

CSV rows (--csv): bench_csv.py's predict case, whole processes: `dlcli
predict` on a 100,000-row CSV against pandas.read_csv + model.predict.

Image rounds are short (a third of a second a side on 2 cores), and a
shared host's speed can flip between rounds: the default is 15 rounds, so
that a few slow rounds do not move the per-pair median.

    python bench/bench_predict.py [--images 2000] [--rounds 15] [--csv] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_average, machine, median, pair_ratio, table, verdict, write_result  # noqa: E402

TARGET = 0.9
BASELINES = ("keras tf.data", "keras image_dataset_from_directory")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, help="images in the generated folder (default 2000; --quick 300)")
    p.add_argument("--size", type=int, default=64, help="model input height and width (default 64)")
    p.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default: images 15, CSV 5; --quick 2)")
    p.add_argument("--csv", action="store_true", help="also the CSV predict case (bench_csv.py --predict)")
    p.add_argument("--csv-rows", type=int, help="rows of the CSV case (default 100,000; --quick 10,000)")
    p.add_argument("--quick", action="store_true", help="fewer images, rows and rounds")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    images = a.images or (300 if a.quick else 2000)
    rounds = a.rounds or (2 if a.quick else 15)
    work = a.keep or Path(tempfile.mkdtemp(prefix="dlcli-bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result: dict[str, Any] = {"machine": machine(), "images": run_images(images, a.size, a.batch_size, rounds, work)}
        print(report_images(result["images"]))
        if a.csv:
            import bench_csv

            rows = a.csv_rows or (10_000 if a.quick else 100_000)
            (work / "csv").mkdir(exist_ok=True)  # its own runs/ (it takes the model it finds there)
            result["csv"] = bench_csv.run_predict(rows, a.rounds or (2 if a.quick else 5), work / "csv")
            print()
            print(bench_csv.report_predict(result["csv"]))
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    write_result(a.json, result)
    return 0


def run_images(n: int, size: int, bs: int, rounds: int, work: Path) -> dict[str, Any]:
    """Time the image sides in interleaved rounds (see the module doc)."""
    import numpy as np

    from dlcli import api
    from dlcli.data import make_demo_image_folder

    folder = work / "images"
    make_demo_image_folder(folder, n_per_class=n // 2, size=int(size * 1.25), corrupt=False)
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    run = api.train(_config(folder, size), output=work / "runs", progress="none").run_dir
    sides = _sides(run, folder, files, size, bs)
    probs = {name: fn() for name, fn in sides.items()}  # warm-up: tracing, file cache
    by_file = {r["input"]: r["probability"] for r in probs["dlcli"]}
    np.testing.assert_allclose([by_file[f] for f in files], probs["keras tf.data"].max(axis=1), atol=1e-4)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    loads = []
    names = list(sides)
    for i in range(rounds):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t, c = time.perf_counter(), time.process_time()
            got = len(sides[name]())
            times[name].append((time.perf_counter() - t, time.process_time() - c))
            if got != len(files):
                raise RuntimeError(f"{name} predicted {got} of {len(files)} images")
        loads.append(os.getloadavg()[0])
    out: dict[str, Any] = {"images": len(files), "size": size, "batch_size": bs, "rounds": rounds,
                           "load_average_1m": loads, "seconds": {k: [w for w, _ in v] for k, v in times.items()},
                           "cpu_seconds": {k: [c for _, c in v] for k, v in times.items()}}
    for base in BASELINES:
        out[base] = {"ratio": pair_ratio(out["seconds"][base], out["seconds"]["dlcli"]),
                     "cpu_ratio": pair_ratio(out["cpu_seconds"][base], out["cpu_seconds"]["dlcli"])}
    return out


def _sides(run: Path, folder: Path, files: list[str], size: int, bs: int) -> dict[str, Callable[[], Any]]:
    """Each side as a function predicting every file (its results)."""
    import keras
    import tensorflow as tf

    from dlcli.model.io import open_run
    from dlcli.prediction import predict_inputs

    model = keras.saving.load_model(run / "model.keras")

    def load(path):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        img.set_shape([None, None, 3])
        return tf.image.resize(img, (size, size))

    def keras_tfdata():
        ds = tf.data.Dataset.from_tensor_slices(files).map(load, num_parallel_calls=tf.data.AUTOTUNE)
        return model.predict(ds.batch(bs).prefetch(tf.data.AUTOTUNE), verbose=0)

    def keras_directory():
        ds = keras.utils.image_dataset_from_directory(folder, labels=None, image_size=(size, size), batch_size=bs,
                                                      shuffle=False, verbose=False)
        return model.predict(ds.prefetch(tf.data.AUTOTUNE), verbose=0)

    opened = open_run(run)  # loading is start-up cost, as for the scripts' model

    def dlcli():
        return [r for r in predict_inputs(opened, [str(folder)], batch_size=bs) if "error" not in r]

    return {"keras tf.data": keras_tfdata, "keras image_dataset_from_directory": keras_directory, "dlcli": dlcli}


def report_images(r: dict[str, Any]) -> str:
    n = r["images"]
    rows = [[name, f"{n / median(r['seconds'][name]):,.0f}", f"{n / median(r['cpu_seconds'][name]):,.0f}",
             f"{median(r['seconds'][name]):.2f}", f"{median(r['cpu_seconds'][name]):.2f}"] for name in r["seconds"]]
    lines = [f"predict {n:,} images (JPEG and PNG) to {r['size']}x{r['size']}x3, batch {r['batch_size']}, one process, "
             f"{r['rounds']} interleaved rounds, 1-min load average {min(r['load_average_1m']):.1f}-"
             f"{max(r['load_average_1m']):.1f} ({load_average()})",
             table(rows, ["side", "images/s", "images/CPU s", "wall s", "CPU s"]), ""]
    for base in BASELINES:
        e = r[base]
        lines.append(f"dlcli / {base} (median of per-round ratios): wall {e['ratio']:.2f}x, CPU {e['cpu_ratio']:.2f}x "
                     f"(target >= {TARGET}: {verdict(e['ratio'], TARGET)})")
    return "\n".join(lines)


def _config(folder: Path, size: int) -> dict:
    return {
        "name": "bench_predict",
        "seed": 0,
        "data": {"source": "image_dir", "path": str(folder), "image_size": [size, size], "color_mode": "rgb",
                 "batch_size": 32, "limit": 64},
        "model": {"layers": [
            {"Rescaling": {"scale": 1 / 255}},
            {"Conv2D": {"filters": 16, "kernel_size": 3, "strides": 2, "activation": "relu"}},
            {"Conv2D": {"filters": 32, "kernel_size": 3, "strides": 2, "activation": "relu"}},
            {"Conv2D": {"filters": 64, "kernel_size": 3, "strides": 2, "activation": "relu"}},
            "GlobalAveragePooling2D",
            {"Dense": {"units": 2, "activation": "softmax"}},
        ]},
        "compile": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        "train": {"epochs": 1},
    }


if __name__ == "__main__":
    sys.exit(main())
