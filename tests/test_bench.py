"""The benchmark scripts run as a user runs them (`python bench/...`), in a
tiny mode, and print and save figures that make sense. These check that
the scripts work, not how fast dlcli is (bench/README.md has the figures)."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _run(script: str, *args: str, tmp_path: Path, timeout: int = 900) -> tuple[str, dict]:
    out = tmp_path / "figures.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json", str(out)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def _positive(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_cli_latency(tmp_path):
    text, r = _run("bench_cli.py", "--runs", "1", tmp_path=tmp_path)
    assert set(r["commands"]) == {"python -c pass", "dlcli --help", "dlcli validate cnn_digits.yaml"}
    for c in r["commands"].values():
        assert _positive(c["median_s"]) and c["min_s"] <= c["median_s"]
    # Starting dlcli costs more than starting Python, as measured.
    assert r["commands"]["dlcli --help"]["vs_python"] > 1
    assert r["verdict"] in ("met", "NOT met")
    assert "dlcli --help" in text and "target <= 0.5s" in text


@pytest.mark.slow
def test_train_throughput_tiny(tmp_path):
    # One workload (both share the code): plain Keras and dlcli, 3 epochs each.
    text, r = _run("bench_train.py", "--quick", "--workload", "mlp", "--samples", "600", "--repeats", "1", tmp_path=tmp_path)
    assert set(r["workloads"]) == {"mlp"}
    for name, e in r["workloads"].items():
        assert e["samples"] == 600
        assert all(_positive(v) for v in e["keras_samples_per_s"] + e["dlcli_samples_per_s"])
        assert e["ratio"] == pytest.approx(max(e["dlcli_samples_per_s"]) / max(e["keras_samples_per_s"]))
        assert e["verdict"] == ("met" if e["ratio"] >= e["target"] else "NOT met")
        assert name in text


@pytest.mark.slow
def test_pipeline_throughput_tiny(tmp_path):
    text, r = _run("bench_pipeline.py", "--images", "40", "--repeats", "1", tmp_path=tmp_path)
    assert r["images"] == 40
    for side in ("keras", "dlcli"):
        assert all(_positive(v) for v in r[side]["steady_images_per_s"] + r[side]["steady_images_per_cpu_s"])
    assert _positive(r["ratio"]) and _positive(r["cpu_ratio"])
    assert "image_dataset_from_directory" in text


@pytest.mark.slow
def test_memory_tiny(tmp_path):
    text, r = _run("bench_memory.py", "--sizes", "20", "60", "--rounds", "2", tmp_path=tmp_path)
    assert set(r["sizes"]) == {"20", "60"} and r["rounds"] == 2
    for v in r["sizes"].values():
        # A TensorFlow process: hundreds of MiB, not KiB or bytes.
        assert 100 < v["peak_rss_mb"] < 20000
        assert _positive(v["wall_s"]) and _positive(v["cpu_s"]) and v["cpu_s"] < 20 * v["wall_s"]
    # The ratio: the median of the rounds' own ratios (sizes interleaved), not a best-of.
    pairs = [b["peak_rss_mb"] / a["peak_rss_mb"] for a, b in zip(r["runs"]["20"], r["runs"]["60"])]
    assert len(pairs) == 2 and r["ratios"] == pytest.approx(pairs)
    assert r["ratio"] == pytest.approx(statistics.median(pairs))
    assert "peak memory ratio" in text and "load average" in text and "CPU s" in text


@pytest.mark.slow
def test_predict_tiny(tmp_path):
    text, r = _run("bench_predict.py", "--images", "40", "--rounds", "1", "--csv", "--csv-rows", "2000", tmp_path=tmp_path)
    img = r["images"]
    assert img["images"] == 40 and set(img["seconds"]) == {"keras tf.data", "keras image_dataset_from_directory", "dlcli"}
    assert all(_positive(v) for k in ("seconds", "cpu_seconds") for vs in img[k].values() for v in vs)
    for base in ("keras tf.data", "keras image_dataset_from_directory"):
        assert img[base]["ratio"] == pytest.approx(img["seconds"][base][0] / img["seconds"]["dlcli"][0])
        assert _positive(img[base]["cpu_ratio"])
    assert r["csv"]["rows"] == 2000 and _positive(r["csv"]["speed_wall"]) and _positive(r["csv"]["speed_cpu"])
    assert "dlcli / keras tf.data" in text and "load average" in text and "pandas + model.predict" in text


@pytest.mark.slow
def test_csv_load_tiny(tmp_path):
    text, r = _run("bench_csv.py", "--rows", "20000", "--rounds", "1", tmp_path=tmp_path)
    assert r["rows"] == 20000 and set(r["runs"]) == {
        "pandas", "pandas, one thread", "dlcli parse (cache off)", "dlcli first read", "dlcli repeat read", "dlcli load_data (repeat)"}
    for side, (run,) in r["runs"].items():
        assert _positive(run["in_wall"]) and _positive(run["in_cpu"]), side
    for side, s in r["speed"].items():
        assert side == "pandas" or (_positive(s["wall"]) and _positive(s["cpu"])), side
    assert "dlcli repeat read: wall" in text and "load average" in text and "peak RSS" in text
    assert "pandas reading with one thread" in text
