"""Training: fit, callbacks, checkpoints and resume, distribution."""

from dlcli.training.trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
