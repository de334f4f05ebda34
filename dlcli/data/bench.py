"""Throughput of the image_dir pipeline against Keras's own
`keras.utils.image_dataset_from_directory`, on the same folder.

    python -m dlcli.data.bench FOLDER [--size 224] [--epochs 3] [--batch-size 32]

Each pipeline runs in its own process (so peak memory is its own) and
reads every image of the folder once per epoch, with no model. Prints one
JSON object: per pipeline the set-up time (listing, and dlcli's pre-flight
check), images per second of each epoch, CPU milliseconds per image and the
peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_one(which: str, folder: str, size: int, epochs: int, batch_size: int, deterministic: bool) -> dict:
    """Time one pipeline in this process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    start = time.perf_counter()
    if which == "keras":
        import keras

        ds = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=batch_size, seed=1, verbose=False
        )
    else:
        from dlcli.config.schema import Config
        from dlcli.data import load_data

        cfg = Config.model_validate({
            "model": {"layers": ["Flatten"]},
            "data": {"source": "image_dir", "path": folder, "image_size": [size, size],
                     "validation_split": 0.0, "test_split": 0.0, "batch_size": batch_size},
        })
        ds = load_data(cfg).train
    if not deterministic:
        options = tf.data.Options()
        options.deterministic = False
        ds = ds.with_options(options)
    setup = time.perf_counter() - start
    rates, cpu_ms = [], []
    for _ in range(epochs):
        t, c, n = time.perf_counter(), _cpu_seconds(), 0
        for x, _ in ds:
            n += int(x.shape[0])
        rates.append(round(n / (time.perf_counter() - t), 1))
        cpu_ms.append(round((_cpu_seconds() - c) / max(n, 1) * 1e3, 3))
    return {
        "pipeline": which,
        "images": n,
        "setup_s": round(setup, 3),
        "images_per_s": rates,
        "cpu_ms_per_image": cpu_ms,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--nondeterministic", action="store_true", help="let parallel decoding return images out of order")
    p.add_argument("--one", choices=["dlcli", "keras"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(run_one(a.one, a.folder, a.size, a.epochs, a.batch_size, not a.nondeterministic)))
        return
    results = {}
    for which in ("keras", "dlcli"):
        cmd = [sys.executable, "-m", "dlcli.data.bench", a.folder, "--size", str(a.size), "--epochs", str(a.epochs),
               "--batch-size", str(a.batch_size), "--one", which] + (["--nondeterministic"] if a.nondeterministic else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[which] = json.loads(out.strip().splitlines()[-1])
    k, d = results["keras"]["images_per_s"], results["dlcli"]["images_per_s"]
    # Later epochs are the steady state (the first warms file caches and tracing).
    results["speedup"] = round((sum(d[1:] or d) / len(d[1:] or d)) / (sum(k[1:] or k) / len(k[1:] or k)), 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
