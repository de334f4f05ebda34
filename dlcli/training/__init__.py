"""Training: the Trainer engine, callbacks, checkpoints and resume,
phases, distribution."""

from dlcli.training.trainer import Trainer, TrainResult, train

__all__ = ["TrainResult", "Trainer", "train"]
