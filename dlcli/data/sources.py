"""The names of the data sources (no heavy imports: `dlcli validate` reads
these without TensorFlow)."""

from __future__ import annotations

# Shipped inside scikit-learn, so they work offline.
SKLEARN_SOURCES = ("digits", "iris", "wine", "breast_cancer", "diabetes")
# Downloaded once into Keras's cache by keras.datasets.
KERAS_SOURCES = ("mnist", "fashion_mnist", "cifar10", "cifar100")
# Read from data.path.
FILE_SOURCES = ("image_dir", "csv", "npz")
# Built from other sets at load time.
GENERATED_SOURCES = ("ctc_digits",)

SOURCES = SKLEARN_SOURCES + KERAS_SOURCES + FILE_SOURCES + GENERATED_SOURCES

# Sources held as in-memory arrays (everything but image_dir).
ARRAY_SOURCES = tuple(s for s in SOURCES if s != "image_dir")

# What image_dir and predict accept; decoded by content, not by extension.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

# Keys of `data.ctc` for the ctc_digits source, with their defaults.
CTC_DEFAULTS = {"length": 4, "samples": 6000, "min_length": None, "gap": 0}
