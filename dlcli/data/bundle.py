"""What every data source hands the rest of dlcli."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from dlcli.data.spec import DataSpec

if TYPE_CHECKING:  # numpy costs ~100 ms that `dlcli validate` need not pay
    import numpy as np


@dataclass
class DataBundle:
    """Batched `tf.data` pipelines plus what is needed to repeat the
    preprocessing at predict time.

    Attributes:
        train: shuffled, batched, prefetched `(x, y)` batches (augmentation
            applied, training only).
        val: validation batches, or None when validation_split is 0.
        test: test batches (the source's own test set or a fixed, seeded
            split), or None.
        input_shape: one sample's shape, without the batch axis.
        spec: the `DataSpec` saved as `data_spec.json` in the run folder
            (task, classes, input layout, preprocessing to repeat).
        num_train / num_val / num_test: sample counts.
        rng_variables: the augmentation layers' random-state variables,
            saved in checkpoints so a resumed run augments as an
            uninterrupted one would.
        representative: returns up to n unbatched training inputs as a
            numpy array (int8 export calibration, parity checks).
        head: wraps the model built from the config in the preprocessing
            its inputs need (see `attach`).
        notes: things the user should see after loading (files skipped,
            missing values filled).
        adapt_data: returns a fresh batched dataset of the training split's
            inputs only, in its stored order, unshuffled and unaugmented:
            what the model's preprocessing layers adapt on
            (`dlcli.model.adapt`); None falls back to `representative`.
    """

    train: Any
    val: Any
    test: Any
    input_shape: tuple
    spec: DataSpec
    num_train: int = 0
    num_val: int = 0
    num_test: int = 0
    representative: Optional[Callable[[int], np.ndarray]] = None
    notes: list[str] = field(default_factory=list)
    rng_variables: list[Any] = field(default_factory=list)
    adapt_data: Optional[Callable[[], Any]] = None
    head: Optional[Callable[[Any], Any]] = None

    def attach(self, model: Any) -> Any:
        """The model with the data's own preprocessing in front (CSV /
        Parquet: FeatureSpace layers taking raw rows); `model` itself for
        sources without any."""
        return model if self.head is None else self.head(model)

    @property
    def class_names(self) -> Optional[list[str]]:
        return self.spec.class_names

    @property
    def num_classes(self) -> Optional[int]:
        return self.spec.num_classes

    @property
    def task(self) -> str:
        return self.spec.task
