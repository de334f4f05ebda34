"""The config schema: one pydantic model per section.

Every field has a description and a default; `dlcli schema` prints the
JSON Schema built from these models. Keras objects (layers, losses,
optimizers, metrics, callbacks) are kept as the user wrote them (a name or
a `{class_name, config}` mapping, or `ClassName: {kwargs}` for layers and
callbacks) and checked against Keras's own registries by
`dlcli.config.catalog`, not by a hand-written table here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dlcli.errors import ConfigError

# A Keras object reference: "adam", or {"class_name": "Adam", "config": {...}}.
KerasRef = Union[str, dict[str, Any]]
# A layer or callback entry: "Flatten", or {"Conv2D": {...}, "name": ..., "inputs": ...}.
Entry = Union[str, dict[str, Any]]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the data comes from and how it is batched."""

    source: str = Field(
        "digits",
        description=(
            "A built-in data set (digits, iris, wine, breast_cancer, diabetes; "
            "mnist, fashion_mnist, cifar10, cifar100 through Keras's cache), "
            "or one of image_dir | csv | parquet | npz."
        ),
    )
    path: Optional[str] = Field(None, description="File or folder for image_dir / csv / parquet / npz, relative to the config file's folder (recorded absolute in the run folder).")
    target: Optional[Union[str, list[str]]] = Field(None, description="csv / parquet: the label column; npz: the target array. A list: one per model output, each output layer named after its target.")
    sample_weight: Optional[str] = Field(None, description="Per-sample loss weights: a csv column or an npz array (npz default: an array named sample_weight, if any).")
    features: Optional[list[str]] = Field(None, description="csv / parquet: the input columns (default: every column but the targets and the sample weight).")
    inputs: Optional[dict[str, Union[str, list[str]]]] = Field(None, description="csv / parquet: columns feeding named model inputs, {input name: column or [columns]}; layers name them in `inputs:`.")
    column_types: Optional[dict[str, Union[str, dict[str, Any]]]] = Field(None, description="csv / parquet: a column's keras.utils.FeatureSpace type (float, float_rescaled, float_normalized, float_discretized, integer_categorical, integer_hashed, string_categorical, string_hashed, hashed), text (raw strings to the model) or passthrough; or {type: ..., <FeatureSpace arguments>}. Default: numbers float_normalized, strings string_categorical.")
    crosses: Optional[list[dict[str, Any]]] = Field(None, description="csv / parquet: FeatureSpace feature crosses, [{features: [a, b], crossing_dim: 32}].")
    validation_path: Optional[str] = Field(None, description="Explicit validation data, the same kind of file as data.path (replaces validation_split).")
    test_path: Optional[str] = Field(None, description="Explicit test data, the same kind of file as data.path (replaces test_split).")
    split: Literal["random", "ordered"] = Field("random", description="random: seeded (stratified) splits; ordered: the last rows are held out, chronologically, and nothing is shuffled across the split.")
    window: Optional[dict[str, Any]] = Field(None, description="csv / parquet time series: keras.utils.timeseries_dataset_from_array arguments (sequence_length, sampling_rate, sequence_stride) plus target_offset: predict the target this many rows after the window's last row.")
    encoding: Optional[str] = Field(None, description="csv: the file's text encoding (default utf-8), e.g. latin-1.")
    image_size: Optional[list[int]] = Field(None, description="image_dir: resize every image to [height, width] (default 224x224, or the backbone's size).", min_length=2, max_length=2)
    color_mode: Literal["grayscale", "rgb"] = Field("rgb", description="image_dir: grayscale | rgb.")
    sequence: bool = Field(False, description="Image data sets: give each image as a sequence of rows (samples, height, width) for recurrent models.")
    validation_split: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of the training data held out for validation.")
    test_split: float = Field(0.2, ge=0.0, lt=1.0, description="Fraction held out as a fixed, seeded test split where the source has none.")
    batch_size: int = Field(32, ge=1, description="Batch size (per replica when distributed).")
    shuffle_buffer: int = Field(10000, ge=0, description="Shuffle buffer size in samples (0 disables shuffling).")
    cache: Union[bool, Literal["auto"]] = Field("auto", description="Cache decoded samples in memory: true, false, or auto (in-memory sources only). csv / parquet with false: stream the file in blocks (flat memory for files larger than memory).")
    augment: list[Entry] = Field(default_factory=list, description="Keras preprocessing layers applied to training batches only, e.g. [RandomFlip: {mode: horizontal}].")
    limit: Optional[int] = Field(None, ge=1, description="Use at most this many training samples (quick experiments).")
    classes: Optional[list[Union[int, str]]] = Field(None, description="Keep only these classes (labels re-indexed in this order). With masks: the names of the mask values 0, 1, 2, ... in order (default: the mask folder's classes.txt, one name per line, else the values).")
    samples_per_class: Optional[int] = Field(None, ge=1, description="Keep at most this many training samples per class (few-shot experiments).")
    masks: Optional[str] = Field(None, description="image_dir: a folder of per-pixel class masks (PNG, pixel value = class index), matched to the images by file stem; the target of a segmentation model.")
    strict: bool = Field(False, description="image_dir: corrupt or non-image files are an error instead of being skipped.")
    ctc: Optional[dict[str, Any]] = Field(None, description="source ctc_digits: {length: digits per string, samples: how many strings}.")
    vocabulary: Optional[dict[str, Any]] = Field(None, description="csv / parquet / npz with loss ctc: how string targets (\"3 1 4\", \"hello\") become label sequences, {tokens: a list or a string of characters (default: learned from the training split), split: character | whitespace}. Token i is class i + 1 (0 is the CTC blank).")


class BlockConfig(_Section):
    """A block: layers written once, used in model.layers like a layer."""

    params: dict[str, Any] = Field(default_factory=dict, description="The block's parameters and their defaults ({filters: 64}); a parameter left empty (null) must be given by every use. Layers write `$filters` for its value.")
    inputs: list[str] = Field(default_factory=lambda: ["input"], description="The names the block's inputs go by inside it (default: input); a use gives one layer name each.", min_length=1)
    layers: list[Entry] = Field(..., description="The block's layers, written as in model.layers; `inputs:` names the block's inputs and its own layers.", min_length=1)
    output: Optional[str] = Field(None, description="The layer (or `name.N`) whose output is the block's output (default: the last layer).")


class ModelConfig(_Section):
    """The network: a stack of layers, or a graph when entries carry name/inputs."""

    layers: list[Entry] = Field(..., description=(
        "Each entry is `ClassName` or `ClassName: {kwargs}`; `name:` and `inputs:` beside the class make a graph (DAG). "
        "`inputs:` is a name, a list of names (one list argument), or a mapping of call arguments "
        "({query: x, value: x}); `name.N` is element N of a layer with several outputs. "
        "A block is used as `BlockName: {params}`, with `repeat: N` for N copies in a row. "
        "`num_classes` as an argument value is the data's class count."
    ), min_length=1)
    blocks: Optional[dict[str, BlockConfig]] = Field(None, description="Named blocks of layers with parameters, used in model.layers by name (a residual block, a transformer encoder).")
    input_shape: Optional[list[Optional[int]]] = Field(None, description="Override the input shape taken from the data (without the batch axis).")
    inputs: Optional[Union[list[str], dict[str, Optional[list[Optional[int]]]]]] = Field(None, description="Named model inputs: a list of names (shapes from the data: npz arrays, csv inputs), or {name: shape} (null: from the data).")
    outputs: Optional[list[str]] = Field(None, description="Names of the layers that are model outputs (default: the last layer).")
    name: Optional[str] = Field(None, description="The Keras model's name (default: the config's name).")


class CompileConfig(_Section):
    """Loss, optimizer and metrics, resolved through Keras."""

    loss: KerasRef = Field("sparse_categorical_crossentropy", description="A Keras loss name, or {class_name, config}; `ctc` for sequence labelling.")
    optimizer: KerasRef = Field("adam", description="A Keras optimizer name, or {class_name, config}; learning_rate may be a schedule {class_name, config}.")
    metrics: Optional[Union[list[KerasRef], dict[str, Union[KerasRef, list[KerasRef]]]]] = Field(None, description="Keras metric names or {class_name, config}; or a mapping {output name: metrics} for several outputs. Unset: [accuracy] for a classification loss (crossentropy, hinge, focal), none for a regression or reconstruction loss (mse, mae, huber, ...).")
    loss_weights: Optional[Union[list[float], dict[str, float]]] = Field(None, description="Weights of several outputs' losses.")
    steps_per_execution: Union[int, Literal["auto"]] = Field("auto", description="Batches per tf.function call; auto picks a value for small models.")
    jit_compile: Union[bool, Literal["auto"]] = Field("auto", description="XLA compilation: true, false or auto (Keras's default).")


class MLflowConfig(_Section):
    """Where `train.mlflow` logs a run (needs `pip install 'dlcli[mlflow]'`)."""

    tracking_uri: Optional[str] = Field(None, description="MLflow tracking URI (a folder such as ./mlruns, or http://host:5000); default: MLflow's own (MLFLOW_TRACKING_URI, else ./mlruns).")
    experiment: str = Field("dlcli", description="The MLflow experiment the run is logged under.")


class TrainConfig(_Section):
    """How training runs."""

    epochs: int = Field(10, ge=1, description="Number of epochs.")
    callbacks: list[Entry] = Field(default_factory=list, description="Keras callbacks by name: [EarlyStopping: {monitor: val_loss, patience: 3}].")
    distribute: Literal["none", "auto", "mirrored", "multi_worker"] = Field("none", description="tf.distribute strategy: none | auto | mirrored | multi_worker.")
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"] = Field("none", description="Keras mixed precision policy (GPUs).")
    scale_learning_rate: bool = Field(False, description="Multiply the learning rate by the number of replicas when distributed.")
    class_weight: Optional[Union[Literal["balanced"], dict[Union[int, str], float]]] = Field(None, description="Class weights, or balanced.")
    monitor: Optional[str] = Field(None, description="Metric whose best epoch becomes model.keras (e.g. val_accuracy). Unset: model.keras is the last epoch, and the best val_loss epoch is only reported in metrics.json.")
    checkpoint_every: int = Field(1, ge=1, description="Write a resumable checkpoint every N epochs.")
    tensorboard: Optional[bool] = Field(None, description="TensorBoard event files in <run>/tensorboard/: unset = when tensorboard is installed (pip install 'dlcli[tensorboard]'), true = required, false = off.")
    mlflow: Optional[MLflowConfig] = Field(None, description="Log params, per-epoch metrics and the model to MLflow: {tracking_uri, experiment}.")
    verbose: Literal["auto", "progress", "lines", "none"] = Field("auto", description="Progress display: auto (bars on a terminal, lines in a pipe).")


class FinetuneConfig(_Section):
    """Two-phase transfer learning (written by `dlcli finetune`)."""

    fine_tune_epochs: int = Field(0, ge=0, description="Epochs of phase 2 (backbone top layers unfrozen); 0 skips phase 2.")
    unfreeze: Union[int, float] = Field(0.3, description="Phase 2: how many of the backbone's own layers (counted from its top, in the backbone model's layer list, not model.layers) to unfreeze, or a fraction of them.")
    learning_rate_factor: float = Field(0.1, gt=0, description="Phase 2 learning rate = phase 1's times this factor.")


class FloatParam(_Section):
    """A float drawn from [low, high] (Optuna's FloatDistribution)."""

    type: Literal["float"] = Field(description="float")
    low: float = Field(description="The smallest value.")
    high: float = Field(description="The largest value.")
    log: bool = Field(False, description="Draw on a log scale (low > 0).")
    step: Optional[float] = Field(None, gt=0, description="Draw only low, low+step, ... (not with log).")


class IntParam(_Section):
    """An integer drawn from [low, high] (Optuna's IntDistribution)."""

    type: Literal["int"] = Field(description="int")
    low: int = Field(description="The smallest value.")
    high: int = Field(description="The largest value.")
    log: bool = Field(False, description="Draw on a log scale (low >= 1).")
    step: int = Field(1, ge=1, description="Draw only low, low+step, ... (1 with log).")


class CategoricalParam(_Section):
    """One of a list of YAML values (Optuna's CategoricalDistribution);
    a value may be anything a config holds, a whole layer list included."""

    type: Literal["categorical"] = Field(description="categorical")
    choices: list[Any] = Field(min_length=1, description="The values to choose from.")


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class TuneConfig(_Section):
    """Hyperparameter search with Optuna (`dlcli tune`)."""

    metric: Optional[str] = Field(None, description="The metric a trial is judged by, at the epoch model.keras holds (default: train.monitor, else val_loss).")
    direction: Optional[Literal["maximize", "minimize"]] = Field(None, description="maximize | minimize (default: minimize for losses and errors, else maximize).")
    trials: int = Field(20, ge=1, description="Trials the study holds when done (a resumed study runs only the missing ones).")
    timeout: Optional[float] = Field(None, gt=0, description="Start no trial after this many seconds.")
    sampler: Literal["tpe", "random", "cmaes", "grid"] = Field("tpe", description="Optuna sampler, seeded from `seed`: tpe | random | cmaes | grid.")
    pruner: Literal["none", "median", "hyperband"] = Field("median", description="Optuna pruner stopping weak trials early: none | median | hyperband.")
    space: dict[str, Param] = Field(..., min_length=1, description="Dotted config keys, as --set takes them, to distributions: {type: float|int|categorical, ...}.")


class Config(_Section):
    """A dlcli config: data, model, compile, train."""

    name: Optional[str] = Field(None, description="Run name; default: the config file's stem.")
    extends: Optional[Union[str, list[str]]] = Field(None, description="Config(s) this one overrides, deep-merged, relative to this file.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for Python, NumPy, TensorFlow and the data splits (0 to 2**32-1).")
    data: DataConfig = Field(default_factory=DataConfig, description="The data.")
    model: ModelConfig = Field(..., description="The network.")
    compile: CompileConfig = Field(default_factory=CompileConfig, description="Loss, optimizer, metrics.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    finetune: Optional[FinetuneConfig] = Field(None, description="Two-phase fine-tuning of a Backbone layer.")
    tune: Optional[TuneConfig] = Field(None, description="Hyperparameter search space and settings for `dlcli tune` (ignored by train).")

    # Where each dotted key path was written: "model.layers.1" -> (file, line).
    _positions: dict[str, tuple[Optional[str], Optional[int]]] = PrivateAttr(default_factory=dict)
    _source_file: Optional[Path] = PrivateAttr(default=None)
    _notices: list[str] = PrivateAttr(default_factory=list)

    @property
    def source_file(self) -> Optional[Path]:
        """The config file this was loaded from (None for a dict)."""
        return self._source_file

    @property
    def notices(self) -> list[str]:
        """One-line notices from loading (checks that could not run)."""
        return list(self._notices)

    def locate(self, key_path: str) -> tuple[Optional[str], Optional[int]]:
        """Return `(file, line)` where `key_path` (or its nearest parent) was written.

        Args:
            key_path: a dotted key path such as `compile.optimizer.learning_rate`.

        Returns:
            The file (or `--set`) and 1-based line; `(source file, None)`
            when nothing on the path was written in a file.
        """
        key = str(key_path)
        while True:
            if key in self._positions:
                return self._positions[key]
            if not key:
                break
            key = key.rpartition(".")[0]
        return (str(self._source_file) if self._source_file else None, None)

    def error(self, key_path: str, message: str, hint: Optional[str] = None) -> ConfigError:
        """Build a ConfigError located at `key_path`'s file and line.

        Args:
            key_path: the dotted key path the error is about.
            message: what is wrong (one line).
            hint: a suggestion, such as "did you mean 'filters'?".

        Returns:
            The error, to `raise`.
        """
        from dlcli.config.suggest import tidy

        file, line = self.locate(key_path)
        return tidy(ConfigError(message, file=file, line=line, key=key_path or None, hint=hint))

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved config as plain data: defaults included, no `extends`."""
        # A config without a search space says nothing about one (run
        # folders' config.yaml stay as they were before `tune:` existed).
        skip = {"extends"} | ({"tune"} if self.tune is None else set())
        return self.model_dump(mode="python", exclude=skip)

    def to_yaml(self) -> str:
        """The fully resolved config as block-style YAML, keys in schema order."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True)
