"""The data spec: what a data source tells the rest of dlcli.

`DataSpec` travels from the data stage to the run folder (as
`data_spec.json`), to predict, evaluate and export: the task and classes,
the input layout, and the preprocessing that has to be repeated on new
inputs. It is a typed pydantic model; code reads attributes, never string
keys. Building one with a key it does not define is an error (a typo in a
source fails its tests); reading a file written by another dlcli version
keeps the keys it knows and drops the rest, so older run folders still
open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

# Version 1: the plain dict of dlcli before the registry (same keys).
SPEC_VERSION = 2

Task = Literal["classification", "binary", "regression", "ctc"]
LabelMode = Literal["int", "onehot", "binary", "float", "ctc"]
InputKind = Literal["image", "vector", "array", "table", "text", "audio"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Counts(_Strict):
    """Samples per split."""

    train: int = 0
    val: int = 0
    test: int = 0


class Standardize(_Strict):
    """Per-column training statistics of a feature vector (one-hot columns
    keep mean 0, std 1)."""

    mean: list[float]
    std: list[float]


class ColumnSpec(_Strict):
    """A raw feature column of a table: what predict reads and feeds."""

    name: str
    type: str = Field(..., description="FeatureSpace type, text or passthrough.")
    dtype: Literal["float32", "int64", "string"]
    fill: Union[float, int, str, None] = Field(None, description="What a missing value becomes.")
    input: str = Field("features", description="The model input it feeds.")


class OutputSpec(_Strict):
    """One model output's target, where there are named or several
    targets (npz arrays, csv target lists): what evaluate and predict
    report for it."""

    name: str = Field(..., description="The output layer's (and the target's) name.")
    task: Task = "regression"
    label_mode: LabelMode = "float"
    class_names: Optional[list[str]] = None
    num_classes: Optional[int] = None
    shape: list[int] = Field(default_factory=list, description="One sample's target shape (no batch axis).")


class DataSpec(_Strict):
    """What a model was trained on and how its inputs were prepared.

    Common: `source`, `task`, `label_mode`, `class_names` (None for
    regression), `num_classes`, `input_shape`, `input_kind` (image |
    vector | array | table), `seed`, `counts`; `class_counts` (training
    samples per class) for classification, `target_width` for regression.
    The other groups are set by the sources they belong to (None
    elsewhere).
    """

    version: int = Field(SPEC_VERSION, description="Format version of data_spec.json.")
    source: str = Field(..., description="The data.source the model was trained on ('model': inferred from a bare .keras file).")
    task: Task = "classification"
    label_mode: Optional[LabelMode] = None
    class_names: Optional[list[str]] = None
    num_classes: Optional[int] = None
    input_shape: Optional[list[Optional[int]]] = None
    input_kind: InputKind = "array"
    seed: Optional[int] = None
    counts: Counts = Field(default_factory=Counts)
    class_counts: Optional[list[int]] = None
    target_width: Optional[int] = None
    inferred: bool = Field(False, description="Inferred from a bare model file (no data_spec.json).")
    fingerprint: Optional[dict[str, str]] = Field(
        None, description="sha256 of config.yaml and of each data file (a folder: its listing) when the run started; "
        "--resume compares them.")

    # Images (image_dir, digits, Keras's sets, ctc_digits).
    image_size: Optional[list[int]] = None
    color_mode: Optional[Literal["grayscale", "rgb"]] = None
    pixel_range: Optional[list[float]] = None
    sequence: bool = False
    sequence_axis: Optional[Literal["height", "width"]] = None
    extensions: Optional[list[str]] = None
    layout: Optional[str] = None
    skipped: Optional[int] = None
    found: Optional[int] = Field(None, description="Folder sources: the readable files found (before limit / samples_per_class).")

    # Files.
    path: Optional[str] = None

    # Feature vectors (iris, wine, breast_cancer, diabetes, csv).
    features: Optional[list[str]] = None
    numeric: Optional[list[str]] = None
    standardize: Optional[Standardize] = None
    target: Optional[Union[str, list[str]]] = None
    categorical: Optional[dict[str, list[str]]] = None
    feature_names: Optional[list[str]] = None

    # Named inputs and outputs (npz arrays named after them).
    inputs: Optional[dict[str, list[Optional[int]]]] = None
    input_dtypes: Optional[dict[str, str]] = None
    outputs: Optional[list[OutputSpec]] = None
    sample_weight: Optional[str] = None
    # Tables (csv, parquet): raw columns, text encoding, time windows.
    columns: Optional[list[ColumnSpec]] = None
    encoding: Optional[str] = None
    window: Optional[dict[str, Any]] = None

    # ctc_digits.
    blank_index: Optional[int] = None
    mask_index: Optional[int] = None
    label_offset: Optional[int] = None
    max_label_length: Optional[int] = None
    min_label_length: Optional[int] = None
    ctc: Optional[dict[str, Any]] = None
    source_pools: Optional[dict[str, int]] = None
    charset: Optional[list[str]] = None
    token_separator: Optional[str] = Field(None, description="What decoded CTC tokens are joined with (data.vocabulary's split: '' or ' ').")

    @classmethod
    def read(cls, data: Union["DataSpec", Mapping[str, Any]]) -> "DataSpec":
        """A spec from a `data_spec.json` mapping of any version (unknown
        keys dropped), or the spec itself."""
        if isinstance(data, DataSpec):
            return data
        known = {k: v for k, v in dict(data).items() if k in cls.model_fields and k != "version"}
        if "source" not in known:
            known["source"] = "unknown"
        return cls.model_validate(known)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "DataSpec":
        """Read a `data_spec.json` file (see `read`)."""
        return cls.read(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data for `data_spec.json` (unset groups left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def copy_with(self, **changes: Any) -> "DataSpec":
        """A validated copy with some fields changed."""
        return type(self).model_validate({**self.model_dump(), **changes})
