#!/usr/bin/env python
"""Does transfer learning help? A measured answer, offline, with dlcli alone.

1. Pretrain a small CNN on scikit-learn's digits 0-4 (`dlcli train`).
2. Fine-tune it on digits 5-9 with only 20 training images per class
   (`dlcli finetune --base <that run>`): phase 1 trains a new head on the
   frozen convolutions, phase 2 unfreezes the top of them at a tenth of the
   learning rate.
3. Baselines trained from scratch on the same 100 images for as many
   epochs (`dlcli train`):
   - scratch: the same network (the same convolutions, the same head)
     from random weights;
   - head only: the same head (Flatten, Dropout, Dense) on the raw pixels,
     i.e. what the head alone makes of the images without the features.

All are scored on the same held-out digits 5-9 (a fixed, seeded test split
of half of them, ~450 images no model sees; a larger split than the default
20% so that one image is 0.2 points, not 0.6). Each step is a `dlcli`
command run as a subprocess, reading its `--json` output.

    python scripts/transfer_experiment.py              # 3 seeds, ~8 min on 2 busy CPU cores
    python scripts/transfer_experiment.py --seeds 1 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

# The pretrained network: two convolutions are the part that transfers;
# the Dense layers are its digits-0-4 head, which finetune cuts off.
FEATURES = [
    {"Rescaling": {"scale": 0.0625}},  # digits pixels are 0..16
    {"Conv2D": {"filters": 32, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    {"Conv2D": {"filters": 64, "kernel_size": 3, "padding": "same", "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
]
PRETRAIN_HEAD = [
    "Flatten",
    {"Dropout": {"rate": 0.3}},
    {"Dense": {"units": 128, "activation": "relu"}},
    {"Dense": {"units": 5, "activation": "softmax"}},
]
PRETRAIN_CLASSES = [0, 1, 2, 3, 4]
TARGET_CLASSES = [5, 6, 7, 8, 9]
SHOTS = 20  # training images per class for the target task
PRETRAIN_EPOCHS = 30
# Shifting the digits by up to a pixel while pretraining gives features
# that do not depend on exact positions (as configs/cnn_digits.yaml).
PRETRAIN_AUGMENT = [{"RandomTranslation": {"height_factor": 0.125, "width_factor": 0.125}}]
TEST_SPLIT = 0.5
# 100 images at batch 16 are 7 steps an epoch: enough epochs for ~400 steps.
EPOCHS = 40
FINE_TUNE_EPOCHS = 20
BATCH_SIZE = 16
LEARNING_RATE = 0.002


def dlcli(*args: str, env: dict[str, str]) -> dict[str, Any]:
    """Run one dlcli command with --json and return its JSON object."""
    cmd = [sys.executable, "-m", "dlcli", *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"failed ({proc.returncode}): dlcli {' '.join(args)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def target_data(seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "data": {"source": "digits", "classes": TARGET_CLASSES, "samples_per_class": SHOTS, "batch_size": BATCH_SIZE,
                 "test_split": TEST_SPLIT},
    }


def run(work: Path, seeds: list[int], env: dict[str, str]) -> dict[str, Any]:
    """Pretrain once, then fine-tune and train from scratch for each seed."""
    runs = work / "runs"
    pretrain_cfg = write_yaml(work / "pretrain_digits_0_4.yaml", {
        "name": "digits_0_4",
        "seed": 0,
        "data": {"source": "digits", "classes": PRETRAIN_CLASSES, "augment": PRETRAIN_AUGMENT},
        "model": {"layers": FEATURES + PRETRAIN_HEAD},
        "compile": {"loss": "sparse_categorical_crossentropy",
                    "optimizer": {"class_name": "adam", "config": {"learning_rate": LEARNING_RATE}}},
        "train": {"epochs": PRETRAIN_EPOCHS},
    })
    pre = dlcli("train", str(pretrain_cfg), "--output", str(runs), "--quiet", env=env)
    print(f"pretrained on digits 0-4: test accuracy {pre['test']['accuracy']:.4f} ({pre['run_dir']})", file=sys.stderr)

    results = []
    for seed in seeds:
        # Fine-tune: the finetune command writes the head (GlobalAveragePooling2D,
        # Dropout, Dense softmax) and the two phases; --config gives the data.
        ft_cfg = write_yaml(work / f"target_seed{seed}.yaml", target_data(seed))
        ft = dlcli(
            "finetune", "--base", pre["run_dir"], "--config", str(ft_cfg),
            "--epochs", str(EPOCHS), "--fine-tune-epochs", str(FINE_TUNE_EPOCHS), "--unfreeze", "1.0",
            "--set", f"compile.optimizer.config.learning_rate={LEARNING_RATE}",
            "--output", str(runs), "--name", f"transfer_seed{seed}", env=env,
        )
        # Scratch: the same layers (features + the head finetune wrote), all
        # trainable from random weights, for as many epochs in total.
        ft_config = yaml.safe_load((Path(ft["run_dir"]) / "config.yaml").read_text(encoding="utf-8"))
        head = ft_config["model"]["layers"][1:]
        scratch_cfg = write_yaml(work / f"scratch_seed{seed}.yaml", {
            "name": f"scratch_seed{seed}",
            **target_data(seed),
            "model": {"layers": FEATURES + head},
            "compile": ft_config["compile"],
            "train": {"epochs": EPOCHS + FINE_TUNE_EPOCHS},
        })
        sc = dlcli("train", str(scratch_cfg), "--output", str(runs), "--quiet", env=env)
        head_cfg = write_yaml(work / f"head_only_seed{seed}.yaml", {
            "name": f"head_only_seed{seed}",
            **target_data(seed),
            "model": {"layers": head},
            "compile": ft_config["compile"],
            "train": {"epochs": EPOCHS + FINE_TUNE_EPOCHS},
        })
        ho = dlcli("train", str(head_cfg), "--output", str(runs), "--quiet", env=env)
        row = {
            "seed": seed,
            "transfer_test_accuracy": ft["test"]["accuracy"],
            "scratch_test_accuracy": sc["test"]["accuracy"],
            "head_only_test_accuracy": ho["test"]["accuracy"],
            "transfer_run": ft["run_dir"],
            "scratch_run": sc["run_dir"],
            "head_only_run": ho["run_dir"],
            "num_train": ft["data"]["num_train"],
            "num_test": ft["data"]["num_test"],
        }
        results.append(row)
        print(f"seed {seed}: transfer {row['transfer_test_accuracy']:.4f}  scratch {row['scratch_test_accuracy']:.4f}  "
              f"head only {row['head_only_test_accuracy']:.4f}  "
              f"({row['num_train']} training images, {row['num_test']} test images)", file=sys.stderr)

    mean = lambda k: sum(r[k] for r in results) / len(results)  # noqa: E731
    return {
        "pretrain_test_accuracy": pre["test"]["accuracy"],
        "runs": results,
        "transfer_mean": mean("transfer_test_accuracy"),
        "scratch_mean": mean("scratch_test_accuracy"),
        "head_only_mean": mean("head_only_test_accuracy"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (data subsets and initialisations) to average")
    parser.add_argument("--workdir", type=Path, help="keep configs and run folders here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    args = parser.parse_args(argv)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dlcli-transfer-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = run(work, list(range(args.seeds)), env)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"digits 5-9, {SHOTS} images per class: transfer {out['transfer_mean']:.4f}, "
              f"scratch {out['scratch_mean']:.4f}, head only {out['head_only_mean']:.4f} "
              f"(test accuracy, mean of {args.seeds} seed(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
