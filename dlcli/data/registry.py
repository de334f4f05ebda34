"""The data-source registry: one entry per `data.source`, one per
predict-time reader.

A `Source` says which function loads it, which `data:` keys it needs, what
`data.path` is (a file with one of its suffixes, or a folder) and which
reader takes its kind of files at predict time. Config validation (no
TensorFlow, no NumPy: this module imports neither), `load_data`, evaluate's
`--data PATH` and predict all read this table, so a new source is one
`register_source(...)` call plus its loader.

Loaders and readers are named as `"module:function"` and imported only
when used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

# What image_dir and predict accept; decoded by content, not by extension.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TABLE_EXTENSIONS = (".csv", ".tsv", ".parquet", ".pq")
ARRAY_EXTENSIONS = (".npz", ".npy")


@dataclass(frozen=True)
class Reader:
    """Reads a kind of predict input into the model's input layout.

    Attributes:
        name: image | table | array.
        suffixes: file suffixes it reads (lower case, with the dot).
        folders: it also reads folders (of images).
        accepts: the spec `input_kind`s whose models it can feed.
        check: `"module:function"` called as `check(spec, path)` before any
            input is read; raises DataError for an input the model cannot
            take. None: nothing to check.
        records: `"module:function"` called as `records(spec, path)`,
            yielding `(name, sample or None, error)` or blocks (see
            `dlcli.data.inputs`). None for images, which `load_inputs`
            decodes in runs across files.
        what: the inputs in words, for messages.
    """

    name: str
    suffixes: tuple[str, ...]
    folders: bool
    accepts: tuple[str, ...]
    check: Optional[str]
    records: Optional[str]
    what: str

    def function(self, which: str) -> Callable[..., Any]:
        """The reader's `check` or `records` function, imported now."""
        return _import(getattr(self, which))


@dataclass(frozen=True)
class Source:
    """A `data.source`.

    Attributes:
        name: the value of `data.source`.
        loader: `"module:function"` called as `loader(cfg)`, returning a
            DataBundle.
        group: builtin (ships in an installed package) | keras (Keras's
            download cache) | file (read from data.path) | generated.
        path: "file" or "folder" when `data.path` is required, else None.
        suffixes: file suffixes its `data.path` has; evaluate's
            `--data PATH` picks the source by them.
        needs: other `data:` keys that must be set (e.g. target).
        options: `data:` keys that only the sources listing them read;
            setting one for another source is a config error.
        reader: the predict-time reader of inputs like its files.
        doc: one line for messages and the schema.
    """

    name: str
    loader: str
    group: str
    path: Optional[str] = None
    suffixes: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    reader: Optional[str] = None
    doc: str = ""

    def load(self, cfg: Any) -> Any:
        """Run the loader on a validated config."""
        return _import(self.loader)(cfg)


SOURCES: dict[str, Source] = {}
READERS: dict[str, Reader] = {}


def register_source(source: Source) -> Source:
    """Add (or replace) a data source."""
    SOURCES[source.name] = source
    return source


def register_reader(reader: Reader) -> Reader:
    """Add (or replace) a predict-time reader."""
    READERS[reader.name] = reader
    return reader


def _import(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def source_names(group: Optional[str] = None) -> tuple[str, ...]:
    """The registered source names, in registration order (of one group)."""
    return tuple(n for n, s in SOURCES.items() if group is None or s.group == group)


def source_for_path(path: Path) -> Optional[Source]:
    """The file source that reads `path` (a folder: image_dir), or None."""
    if path.is_dir():
        return next((s for s in SOURCES.values() if s.path == "folder"), None)
    suffix = path.suffix.lower()
    return next((s for s in SOURCES.values() if suffix in s.suffixes), None)


def reader_for_path(path: Path) -> Optional[Reader]:
    """The predict-time reader of `path` (by its suffix; folders: images)."""
    if path.is_dir():
        return next((r for r in READERS.values() if r.folders), None)
    suffix = path.suffix.lower()
    return next((r for r in READERS.values() if suffix in r.suffixes), None)


def all_suffixes() -> tuple[str, ...]:
    """Every suffix some reader takes, for messages."""
    return tuple(s for r in READERS.values() for s in r.suffixes)


def readers_for_kind(input_kind: Optional[str]) -> list[Reader]:
    """The readers that can feed a model whose spec has this input kind."""
    return [r for r in READERS.values() if input_kind in r.accepts]


def option_owners() -> dict[str, list[str]]:
    """`data:` key -> the sources that read it (keys some source claims)."""
    owners: dict[str, list[str]] = {}
    for s in SOURCES.values():
        for key in s.options:
            owners.setdefault(key, []).append(s.name)
    return owners


# ------------------------------------------------------------------ readers

register_reader(Reader(
    "image", IMAGE_EXTENSIONS, folders=True, accepts=("image",), check=None, records=None,
    what="images (files or folders)",
))
register_reader(Reader(
    "table", TABLE_EXTENSIONS, folders=False, accepts=("vector", "table"),
    check="dlcli.data.table_inputs:check_table", records="dlcli.data.table_inputs:table_records",
    what="CSV or Parquet rows",
))
register_reader(Reader(
    "array", ARRAY_EXTENSIONS, folders=False, accepts=("image", "vector", "array"),
    check="dlcli.data.inputs:check_array", records="dlcli.data.inputs:array_records",
    what="NPZ / NPY arrays",
))
register_reader(Reader(
    "text", (".txt",), folders=False, accepts=("text",), check=None,
    records="dlcli.data.text_audio:text_records", what=".txt files",
))
register_reader(Reader(
    "audio", (".wav",), folders=False, accepts=("audio",), check="dlcli.data.text_audio:check_audio",
    records="dlcli.data.text_audio:audio_records", what=".wav files",
))

# ------------------------------------------------------------------ sources

for _name, _doc in (
    ("digits", "scikit-learn's 8x8 digits (1797 images, 10 classes)"),
    ("iris", "scikit-learn's iris (150 rows, 3 classes)"),
    ("wine", "scikit-learn's wine (178 rows, 3 classes)"),
    ("breast_cancer", "scikit-learn's breast cancer (569 rows, binary)"),
    ("diabetes", "scikit-learn's diabetes (442 rows, regression)"),
):
    register_source(Source(
        _name, "dlcli.data.builtin:sklearn_source", "builtin",
        reader="image" if _name == "digits" else "array", doc=_doc,
    ))
for _name in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
    register_source(Source(
        _name, "dlcli.data.keras_sets:keras_source", "keras", reader="image",
        doc=f"keras.datasets.{_name} (downloaded once into ~/.keras/datasets)",
    ))
register_source(Source(
    "image_dir", "dlcli.data.images:image_dir_source", "file", path="folder", reader="image", options=("masks",),
    doc="a folder of class folders of images (or train/ val/ test/ splits of them)",
))
_TABLE_OPTIONS = ("column_types", "crosses", "window", "vocabulary", "encoding")
register_source(Source(
    "text_dir", "dlcli.data.text_audio:text_dir_source", "file", path="folder", reader="text",
    doc="a folder of class folders of .txt files (raw strings, keras.utils.text_dataset_from_directory)",
))
register_source(Source(
    "audio_dir", "dlcli.data.text_audio:audio_dir_source", "file", path="folder", reader="audio",
    doc="a folder of class folders of .wav files (keras.utils.audio_dataset_from_directory)",
))
register_source(Source(
    "csv", "dlcli.data.tables:table_source", "file", path="file", suffixes=(".csv", ".tsv"),
    needs=("target",), options=_TABLE_OPTIONS, reader="table", doc="a CSV file with a header line",
))
register_source(Source(
    "parquet", "dlcli.data.tables:table_source", "file", path="file", suffixes=(".parquet", ".pq"),
    needs=("target",), options=_TABLE_OPTIONS[:-1], reader="table", doc="an Apache Parquet file",
))
register_source(Source(
    "npz", "dlcli.data.npz:npz_source", "file", path="file", suffixes=(".npz",),
    options=("vocabulary",), reader="array", doc="a NumPy .npz file of arrays x and y",
))
register_source(Source(
    "ctc_digits", "dlcli.data.ctc:ctc_digits_source", "generated", options=("ctc",), reader="image",
    doc="strings of scikit-learn digits side by side, for CTC sequence labelling",
))
del _name, _doc


# --------------------------------------------------------------- validation

def check_data_keys(cfg: Any) -> Source:
    """Check `data.source` and the keys it needs, without reading any data.

    Args:
        cfg: a Config (its `error` locates a key in the config file).

    Returns:
        The source's registry entry.

    Raises:
        ConfigError: an unknown source, a required key left out, or a key
            that belongs to another source.
    """
    from dlcli.config.suggest import did_you_mean

    data = cfg.data
    source = SOURCES.get(data.source)
    if source is None:
        names = list(SOURCES)
        hint = did_you_mean(data.source, names) or "sources are " + ", ".join(names)
        raise cfg.error("data.source", f"unknown data source '{data.source}'", hint=hint)
    if source.path and not data.path:
        what = "a folder" if source.path == "folder" else "a " + " / ".join(source.suffixes or ("",)) + " file"
        raise cfg.error("data.path", f"data.source {source.name} needs data.path ({what})")
    for key in source.needs:
        if not getattr(data, key, None):
            raise cfg.error(f"data.{key}", f"data.source {source.name} needs data.{key}",
                            hint=_NEEDS_HINT.get(key))
    for key, owners in option_owners().items():
        if source.name not in owners and getattr(data, key, None) not in (None, [], {}, False):
            which = f"the {owners[0]} source" if len(owners) == 1 else f"the {' / '.join(owners)} sources"
            raise cfg.error(f"data.{key}", f"data.{key} configures {which}, not {source.name}",
                            hint=f"remove data.{key}, or set data.source: {owners[0]}")
    return source


_NEEDS_HINT = {"target": "the label column (or a list of them, one per model output)"}
