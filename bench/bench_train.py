"""Training throughput: `dlcli train` against plain Keras doing the same work.

Two workloads, random data written once as an .npz file:

- convnet: MNIST's shape (60,000 28x28x1 uint8 images, 10 classes), the
  Keras "simple MNIST convnet" (configs/cnn_mnist.yaml's layers), batch 128.
- mlp: 20,000 rows of 20 float features, 3 classes, Dense 64-32-3, batch
  32: steps so small that Python overhead per step dominates.

Both sides hold out 10% for validation, run validation every epoch and
train the same model with the same batch size and optimizer (Adam). Plain
Keras is `model.fit(x, y, batch_size=..., validation_split=0.1)` on NumPy
arrays with Keras's defaults; dlcli is `dlcli train CONFIG` with its
defaults (which also write a checkpoint and history.csv every epoch).
Throughput is training samples per second from the end of epoch 1 to the
end of the last epoch, so start-up, tracing and compilation are left out
and everything done per epoch is counted; it is given per wall-clock
second and (Linux) per CPU-second of the process, the figure that load
from other processes disturbs least. Each side runs in fresh processes in
interleaved rounds (Keras, dlcli, Keras, dlcli, ...); the ratio is the
median over rounds of each round's dlcli/Keras ratio (per-pair median),
printed with the load average.

`--knobs` also measures dlcli with single speed settings changed
(steps_per_execution, jit_compile, data.cache, mixed precision), to show
where its defaults win or lose.

Usage:
    python bench/bench_train.py              # full size, ~10 minutes on 2 CPUs
    python bench/bench_train.py --quick      # a tenth of the data, ~2 minutes
    python bench/bench_train.py --knobs --json results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import alternate, child_env, dlcli_command, epoch_end_times, load_average, machine, median  # noqa: E402
from _common import pair_ratio, steady_rate, table, verdict, write_result  # noqa: E402

CONVNET_LAYERS = [
    {"Rescaling": {"scale": 1 / 255}},
    {"Conv2D": {"filters": 32, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    {"Conv2D": {"filters": 64, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    "Flatten",
    {"Dropout": {"rate": 0.5}},
    {"Dense": {"units": 10, "activation": "softmax"}},
]
MLP_LAYERS = [
    {"Dense": {"units": 64, "activation": "relu"}},
    {"Dense": {"units": 32, "activation": "relu"}},
    {"Dense": {"units": 3, "activation": "softmax"}},
]

# samples, epochs (full, quick), batch size, the dlcli-vs-Keras target.
WORKLOADS: dict[str, dict[str, Any]] = {
    "convnet": {"n": 60000, "quick_n": 6000, "epochs": 4, "quick_epochs": 3, "batch": 128, "target": 1.0, "layers": CONVNET_LAYERS},
    "mlp": {"n": 20000, "quick_n": 4000, "epochs": 6, "quick_epochs": 4, "batch": 32, "target": 1.5, "layers": MLP_LAYERS},
}

KNOBS = {
    "steps_per_execution=1": ["compile.steps_per_execution=1"],
    "jit_compile=false": ["compile.jit_compile=false"],
    "jit_compile=true": ["compile.jit_compile=true"],
    "data.cache=true": ["data.cache=true"],
    "mixed_bfloat16": ["train.mixed_precision=mixed_bfloat16"],
}


def make_data(workload: str, n: int, path: Path) -> None:
    """Random data of the workload's shape (the labels carry no signal:
    throughput does not depend on what is learnt)."""
    import numpy as np

    rng = np.random.default_rng(0)
    if workload == "convnet":
        x = rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.int64)
    else:
        x = rng.normal(size=(n, 20)).astype(np.float32)
        y = rng.integers(0, 3, size=n).astype(np.int64)
    np.savez(path, x=x, y=y)


def write_config(workload: str, data: Path, path: Path, epochs: int) -> None:
    import yaml

    w = WORKLOADS[workload]
    cfg = {
        "name": f"bench_{workload}",
        "seed": 0,
        "data": {"source": "npz", "path": str(data), "batch_size": w["batch"], "validation_split": 0.1, "test_split": 0.0},
        "model": {"layers": w["layers"]},
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]},
        "train": {"epochs": epochs},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


# -- the plain-Keras side (run in a child process) -----------------------


def keras_child(workload: str, data: str, epochs: int, extra: dict[str, Any]) -> None:
    """Plain Keras: the same model written by hand, `model.fit` on arrays."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    w = WORKLOADS[workload]
    with np.load(data) as f:
        x, y = f["x"].astype("float32"), f["y"]
    keras.utils.set_random_seed(0)
    if workload == "convnet":
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ])
    else:
        model = keras.Sequential([
            keras.Input((20,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], **extra)

    class EpochLine(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(f"epoch {epoch + 1}/{epochs}", file=sys.stderr, flush=True)

    model.fit(x, y, batch_size=w["batch"], epochs=epochs, validation_split=0.1, verbose=0, callbacks=[EpochLine()])
    n_train = int(np.floor(len(x) * 0.9))  # how Keras splits off validation_split
    print(json.dumps({"num_train": n_train}))


# -- measuring -----------------------------------------------------------


def measure_keras(workload: str, data: Path, epochs: int, extra: Optional[dict] = None) -> tuple[float, Optional[float]]:
    cmd = [sys.executable, __file__, "--child-keras", workload, "--data", str(data), "--epochs", str(epochs),
           "--compile-args", json.dumps(extra or {})]
    stamps, out = epoch_end_times(cmd, env=child_env())
    return steady_rate(stamps, json.loads(out.strip().splitlines()[-1])["num_train"])


def measure_dlcli(config: Path, workdir: Path, overrides: Optional[list[str]] = None) -> tuple[float, Optional[float]]:
    cmd = [*dlcli_command(), "train", str(config), "--output", str(workdir / "runs"), "--json"]
    for o in overrides or []:
        cmd += ["--set", o]
    stamps, out = epoch_end_times(cmd, cwd=workdir, env=child_env())
    return steady_rate(stamps, json.loads(out)["data"]["num_train"])


def run(
    quick: bool, repeats: int, knobs: bool, workloads: list[str], workdir: Path, samples: Optional[int] = None
) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "quick": quick, "repeats": repeats, "workloads": {}}
    for name in workloads:
        w = WORKLOADS[name]
        n, epochs = (w["quick_n"], w["quick_epochs"]) if quick else (w["n"], w["epochs"])
        n = samples or n
        data, config = workdir / f"{name}.npz", workdir / f"{name}.yaml"
        make_data(name, n, data)
        write_config(name, data, config, epochs)
        rates = alternate(repeats, {
            "keras": lambda: measure_keras(name, data, epochs),
            "dlcli": lambda: measure_dlcli(config, workdir),
        })
        entry: dict[str, Any] = {"samples": n, "epochs": epochs, "batch_size": w["batch"], "target": w["target"]}
        for side in ("keras", "dlcli"):
            entry[f"{side}_samples_per_s"] = [r[0] for r in rates[side]]
            entry[f"{side}_samples_per_cpu_s"] = [r[1] for r in rates[side]]
        entry["ratio"] = pair_ratio(entry["dlcli_samples_per_s"], entry["keras_samples_per_s"])
        entry["cpu_ratio"] = pair_ratio(entry["dlcli_samples_per_cpu_s"], entry["keras_samples_per_cpu_s"])
        entry["verdict"] = verdict(entry["ratio"], w["target"])
        entry["load_average"] = load_average()
        if knobs:
            entry["knobs"] = measure_knobs(name, data, config, workdir, epochs, repeats)
        results["workloads"][name] = entry
    return results


def measure_knobs(name: str, data: Path, config: Path, workdir: Path, epochs: int, repeats: int) -> dict[str, Any]:
    """Each setting against dlcli's defaults, in its own interleaved rounds
    (defaults, setting, defaults, setting, ...): per-pair median ratios."""
    variants = {k: (lambda o=o: measure_dlcli(config, workdir, o)) for k, o in KNOBS.items()}
    variants["keras steps_per_execution=32"] = lambda: measure_keras(name, data, epochs, {"steps_per_execution": 32})
    out: dict[str, Any] = {}
    for knob, measure in variants.items():
        r = alternate(repeats, {"defaults": lambda: measure_dlcli(config, workdir), knob: measure})
        wall, cpu = [x[0] for x in r[knob]], [x[1] for x in r[knob]]
        out[knob] = {
            "samples_per_s": median(wall),
            "vs_dlcli_defaults": pair_ratio(wall, [x[0] for x in r["defaults"]]),
            "samples_per_cpu_s": median(cpu),
            "cpu_vs_dlcli_defaults": pair_ratio(cpu, [x[1] for x in r["defaults"]]),
        }
    return out


def report(results: dict[str, Any]) -> str:
    def rate(values: list[Optional[float]]) -> str:
        m = median(values)
        return f"{m:,.0f}" if m is not None else "-"

    def times(value: Optional[float]) -> str:
        return f"{value:.2f}x" if value is not None else "-"

    rows = []
    for name, e in results["workloads"].items():
        rows.append([
            name, e["samples"], rate(e["keras_samples_per_s"]), rate(e["dlcli_samples_per_s"]), times(e["ratio"]),
            rate(e["keras_samples_per_cpu_s"]), rate(e["dlcli_samples_per_cpu_s"]), times(e.get("cpu_ratio")),
            f">= {e['target']}x", e["verdict"],
        ])
    text = (f"{results['repeats']} interleaved round(s); samples/s are medians, ratios per-pair medians\n"
            + table(rows, ["workload", "samples", "keras /s", "dlcli /s", "dlcli/keras",
                           "keras /cpu-s", "dlcli /cpu-s", "cpu ratio", "target", ""]))
    for name, e in results["workloads"].items():
        if "knobs" in e:
            krows = [
                [k, rate([v["samples_per_s"]]), times(v["vs_dlcli_defaults"]), rate([v["samples_per_cpu_s"]]),
                 times(v["cpu_vs_dlcli_defaults"])]
                for k, v in e["knobs"].items()
            ]
            text += f"\n\n{name}: one setting changed from dlcli's defaults (samples per second)\n"
            text += table(krows, ["setting", "wall", "vs defaults", "per cpu-s", "vs defaults"])
    loads = "; ".join(f"{name}: {e['load_average']}" for name, e in results["workloads"].items())
    return text + f"\n\nafter each workload, {loads}"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a tenth of the data, fewer epochs")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3, quick 2)")
    p.add_argument("--knobs", action="store_true", help="also measure single speed settings")
    p.add_argument("--workload", choices=sorted(WORKLOADS), action="append", help="only this workload (repeatable)")
    p.add_argument("--samples", type=int, help="samples per workload (default 60,000 / 20,000; quick a tenth)")
    p.add_argument("--workdir", help="where data and runs go (default: a temporary folder)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--child-keras", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--compile-args", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child_keras:
        keras_child(a.child_keras, a.data, a.epochs, json.loads(a.compile_args))
        return 0
    repeats = a.repeats or (2 if a.quick else 3)
    workloads = a.workload or list(WORKLOADS)
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-train-") as tmp:
        workdir = Path(a.workdir) if a.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = run(a.quick, repeats, a.knobs, workloads, workdir, a.samples)
    print(report(results))
    write_result(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
