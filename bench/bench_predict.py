"""Images per second of `dlcli predict` against plain Keras scripts.

Generates a folder of images, trains a small convnet run on it (one epoch
on a few images: the weights do not matter, the work per image does), then
times, over the same folder:

  keras-loop   a plain script: PIL open + resize, model.predict per batch
  keras-tfio   the same with tf.io decode + tf.image.resize per file
  keras-tfdata a tuned plain script: tf.data decode + resize in parallel,
               batched and prefetched into model.predict
  dlcli-api    dlcli.prediction.predict_inputs(run, [folder]) (the run's
               preprocessing, per-file checks, streaming), every result
               consumed; the run is opened once, outside the timing
  dlcli-cli    `dlcli predict RUN folder -o out.csv` in a subprocess

Steady-state throughput excludes one-off costs (imports, model loading,
tracing): each in-process method is warmed up on a few batches first and
the best of --repeats passes is kept. The CLI's fixed start-up cost is its
wall time on a single image; its throughput is measured on the remaining
images.

    python bench/bench_predict.py --images 3000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="images in the generated folder (default 3000)")
    parser.add_argument("--size", type=int, default=64, help="model input height and width (default 64)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per method; the best counts (default 3)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="dlcli-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    import numpy as np

    from dlcli import api
    from dlcli.data import make_demo_image_folder

    folder = work / "images"
    t = time.perf_counter()
    make_demo_image_folder(folder, n_per_class=args.images // 2, size=int(args.size * 1.25), corrupt=False)
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    print(f"{len(files)} images ({args.size * 1.25:.0f}px +-25%, JPEG and PNG) in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    for f in files:  # warm the OS file cache for every method alike
        Path(f).read_bytes()

    t = time.perf_counter()
    run = api.train(_config(folder, args.size), output=work / "runs", progress="none").run_dir
    print(f"trained {run} in {time.perf_counter() - t:.1f}s", file=sys.stderr)

    import keras
    import tensorflow as tf

    model = keras.saving.load_model(run / "model.keras")
    size, bs = (args.size, args.size), args.batch_size
    warm = files[: 2 * bs]

    def keras_loop(paths: list[str]) -> int:
        from PIL import Image

        n = 0
        for i in range(0, len(paths), bs):
            batch = np.stack([
                np.asarray(Image.open(p).convert("RGB").resize(size[::-1], Image.BILINEAR), dtype=np.float32)
                for p in paths[i : i + bs]
            ])
            n += len(model.predict(batch, verbose=0))
        return n

    def keras_tfio(paths: list[str]) -> int:
        n = 0
        for i in range(0, len(paths), bs):
            batch = np.stack([
                tf.image.resize(tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False), size).numpy()
                for p in paths[i : i + bs]
            ])
            n += len(model.predict(batch, verbose=0))
        return n

    def keras_tfdata(paths: list[str]) -> int:
        def load(p):
            img = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False)
            img.set_shape([None, None, 3])
            return tf.image.resize(img, size)

        ds = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(bs)
        return len(model.predict(ds.prefetch(tf.data.AUTOTUNE), verbose=0))

    from dlcli.model.io import open_run
    from dlcli.prediction import predict_inputs

    # Opened once, like the baselines' model: loading is start-up cost.
    opened = open_run(run)

    def dlcli_api(paths: list[str], inputs: list[str] | None = None) -> int:
        return sum(1 for r in predict_inputs(opened, inputs or paths, batch_size=bs) if "error" not in r)

    methods = {
        "keras-loop": keras_loop,
        "keras-tfio": keras_tfio,
        "keras-tfdata": keras_tfdata,
        "dlcli-api": lambda paths: dlcli_api(paths, [str(folder)]),
    }
    for name, fn in methods.items():  # trace every function once
        fn(warm) if name != "dlcli-api" else dlcli_api(warm)
    # Passes interleave the methods, so a busy moment on the machine does
    # not fall on one method only; the best pass of each counts.
    best = {name: float("inf") for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t = time.perf_counter()
            n = fn(files)
            best[name] = min(best[name], time.perf_counter() - t)
            assert n == len(files), f"{name} predicted {n} of {len(files)} images"
    rates = {name: len(files) / s for name, s in best.items()}
    for name, rate in rates.items():
        print(f"  {name:13s} {rate:8.1f} images/s", file=sys.stderr)

    # dlcli-api's start-up: opening the run (model load) and the first batch.
    t = time.perf_counter()
    next(iter(api.predict(run, files[:1])))
    api_startup = time.perf_counter() - t

    dlcli = [sys.executable, "-m", "dlcli"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

    def cli(inputs: list[str]) -> float:
        t = time.perf_counter()
        subprocess.run([*dlcli, "predict", str(run), *inputs, "-b", str(bs), "-o", str(work / "out.csv")],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t

    cli_one = min(cli(files[:1]) for _ in range(2))
    cli_all = min(cli([str(folder)]) for _ in range(2))
    work_s = cli_all - cli_one
    if work_s > 0.2 * cli_all:
        rates["dlcli-cli"] = (len(files) - 1) / work_s
        print(f"  {'dlcli-cli':13s} {rates['dlcli-cli']:8.1f} images/s (beyond its start-up)", file=sys.stderr)
    else:
        print("  dlcli-cli     start-up time varies more than the work takes: rerun with more --images", file=sys.stderr)
    t = time.perf_counter()
    subprocess.run([*dlcli, "--help"], check=True, env=env, stdout=subprocess.DEVNULL)
    help_s = time.perf_counter() - t

    print()
    print(f"images: {len(files)}, input {args.size}x{args.size}x3, batch {bs}, best of {args.repeats}")
    print(f"{'method':14s} {'images/s':>9s} {'vs keras-loop':>14s} {'vs keras-tfio':>14s} {'vs keras-tfdata':>16s}")
    for name, rate in rates.items():
        print(f"{name:14s} {rate:9.1f} {rate / rates['keras-loop']:14.2f} {rate / rates['keras-tfio']:14.2f} {rate / rates['keras-tfdata']:16.2f}")
    print()
    print("fixed start-up cost (not in the rates above):")
    print(f"  dlcli predict, one image, wall time: {cli_one:.2f}s (Python + TensorFlow import, model load, first batch)")
    print(f"  dlcli --help (no TensorFlow):        {help_s:.2f}s")
    print(f"  api.predict, first result:           {api_startup:.2f}s (model load and first batch, TensorFlow already imported)")
    print(f"  dlcli predict on all images, wall:   {cli_all:.2f}s")
    print()
    for base in ("keras-loop", "keras-tfio", "keras-tfdata"):
        print(f"steady-state ratio dlcli-api / {base} = {rates['dlcli-api'] / rates[base]:.2f} (target >= 0.9)")
    return 0


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
