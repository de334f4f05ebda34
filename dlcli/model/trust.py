"""dlcli's one trust policy: what code a run folder or model file may use.

A config the user runs is trusted as code where it names code (dotted
paths). Everything that arrives from elsewhere is data: a run folder's
config.yaml (read again by `train --resume`) and a model file (evaluate,
predict, export, `finetune --base RUN`, `Backbone: {weights: RUN}`).
Opening one imports no module it names unless the user trusts that module:

* `--trust-module MOD` (repeatable) or `DLCLI_TRUSTED_MODULES=mod1,mod2`:
  classes of MOD and its submodules may be used, if MOD is already
  importable (installed or on PYTHONPATH; never from the run folder);
* `--unsafe`: every module, and Keras's safe mode off (Lambda code runs).

Even a trusted class never replaces a name Keras already resolves (a class
called `Dense` would take over every Dense layer of the file), and only
subclasses of the Keras base class expected where it is used are accepted.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from dlcli.errors import ConfigError, RunError

ENV_VAR = "DLCLI_TRUSTED_MODULES"
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class Trust:
    """What the user trusts beyond dlcli and Keras themselves.

    Attributes:
        unsafe: everything (`--unsafe`): any module, and Lambda code.
        modules: modules whose classes (theirs and their submodules') may
            be used.
        run_config: the run folder whose config.yaml is being trained
            again (`--resume`): its dotted paths need trust too.
    """

    unsafe: bool = False
    modules: tuple[str, ...] = ()
    run_config: Optional[Path] = None

    def trusts(self, module: str) -> bool:
        """True when classes of `module` may be used."""
        return self.unsafe or any(module == m or module.startswith(m + ".") for m in self.modules)


def hint(module: str) -> str:
    """What a user types to trust `module`."""
    return f"only if you trust it: --trust-module {module} (or {ENV_VAR}={module}), or --unsafe"


def make_trust(unsafe: bool = False, modules: Sequence[str] = (), run_config: Optional[Path] = None) -> Trust:
    """The policy from the command line plus DLCLI_TRUSTED_MODULES.

    Raises:
        ConfigError: a module name that is not a dotted Python name.
    """
    names = [*(modules or ()), *os.environ.get(ENV_VAR, "").split(",")]
    clean = tuple(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    for n in clean:
        if not _MODULE.fullmatch(n):
            raise ConfigError(f"{n!r} is not a module name", key="--trust-module",
                              hint="a dotted Python module name such as mypkg or mypkg.layers")
    return Trust(unsafe=bool(unsafe), modules=clean, run_config=Path(run_config) if run_config else None)


_CURRENT: ContextVar[Optional[Trust]] = ContextVar("dlcli_trust", default=None)


def current() -> Trust:
    """The policy in force (set by `using`; else DLCLI_TRUSTED_MODULES only)."""
    return _CURRENT.get() or make_trust()


@contextlib.contextmanager
def using(unsafe: bool = False, modules: Sequence[str] = (), run_config: Optional[Path] = None) -> Iterator[Trust]:
    """Put a policy in force for the API call inside the block."""
    token = _CURRENT.set(make_trust(unsafe, modules, run_config))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def with_unsafe(trust: Trust, unsafe: Optional[bool]) -> Trust:
    """`trust`, with `--unsafe` added where a caller passed it."""
    return replace(trust, unsafe=True) if unsafe else trust


def check_config_import(path: str, *, cfg: Any, key: str) -> None:
    """Called before a config's dotted path is imported.

    The user's own config may import what it names; a run folder's
    config.yaml (trained again with --resume) only modules the user trusts,
    found where they are installed, not inside that run folder.

    Raises:
        ConfigError: located at `key` in that config.yaml.
    """
    from dlcli.model._common import cfg_error

    trust = current()
    if trust.run_config is None or trust.unsafe:
        return
    module = path.rpartition(".")[0]
    if not trust.trusts(module):
        raise cfg_error(cfg, key, f"names {path!r}, and dlcli imports no module a run folder names", hint=hint(module))
    where = importable(module)
    if where is None:
        raise cfg_error(cfg, key, f"module {module!r} of {path!r} is not installed or on PYTHONPATH")
    if _inside(where, trust.run_config):
        raise cfg_error(cfg, key, f"module {module!r} would be imported from inside the run folder ({where})",
                        hint="install the module; dlcli never imports code a run folder carries")


def importable(module: str) -> Optional[Path]:
    """Where `module` would be imported from, or None if it cannot be.
    (Finding a submodule imports its parent package: call for trusted
    modules only.)"""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    return Path(spec.origin).resolve() if spec.origin and spec.has_location else Path(module)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def keras_names() -> frozenset[str]:
    """Every name Keras resolves by itself (layers, losses, metrics, ...):
    no custom class may be registered under one."""
    import keras

    modules = (keras.layers, keras.losses, keras.metrics, keras.optimizers, keras.optimizers.schedules,
               keras.initializers, keras.regularizers, keras.constraints, keras.activations, keras.callbacks,
               keras.models)
    names = {n for m in modules for n in dir(m) if not n.startswith("_")}
    return frozenset(names | {"Functional", "Sequential", "Model", "InputLayer"})


def registrable_name(cls: type) -> str:
    """The name `cls` is written under in model files, if it may be
    registered under it.

    Raises:
        ValueError: the name is one Keras resolves to its own class.
    """
    import keras

    name = keras.saving.get_registered_name(cls)
    existing = keras.saving.get_custom_objects().get(name)
    # The same class imported again (a reloaded module) may take its place.
    same = existing is None or _qualified(existing) == _qualified(cls)
    if (">" not in name and name in keras_names()) or not same:
        raise ValueError(
            f"class {cls.__module__}.{cls.__qualname__} would be saved and loaded as {name!r}, "
            "a name Keras already resolves; give it its own name with "
            "@keras.saving.register_keras_serializable(package=...)"
        )
    return name


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}"


def register(cls: type) -> None:
    """Register a custom class the user's config names, under the name
    Keras writes into model files (so reloading in this process finds it).

    Raises:
        ValueError: see `registrable_name`.
    """
    import keras

    keras.saving.get_custom_objects()[registrable_name(cls)] = cls


def load_class(module: str, name: str, base: tuple[type, ...], *, source: Path, trust: Trust) -> type:
    """A custom class a model file names, if the policy allows it.

    Args:
        module: the module the file says the class lives in.
        name: its class name.
        base: the Keras base classes accepted where it is used.
        source: the model file, for messages.
        trust: the policy.

    Raises:
        RunError: not trusted, not importable, not such a class, or it
            would replace a Keras name.
    """
    if not trust.trusts(module):
        raise RunError(f"{source} uses class {name!r} of module {module!r}, and dlcli imports no module "
                       "a model file names", hint=hint(module))
    where = importable(module)
    if where is None:
        raise RunError(f"{source} uses class {name!r} of module {module!r}, which is not installed or on PYTHONPATH")
    # A run folder (config.yaml beside the model) never brings its own code.
    if not trust.unsafe and (source.parent / "config.yaml").is_file() and _inside(where, source.parent):
        raise RunError(f"{source} uses module {module!r} from its own run folder ({where}); dlcli never imports "
                       "code a run folder carries", hint="install the module, or --unsafe")
    try:
        obj = getattr(importlib.import_module(module), name, None)
    except Exception as exc:  # noqa: BLE001 - a trusted module that fails to import
        raise RunError(f"cannot import module {module!r} (for {source}): {type(exc).__name__}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, base)):
        kinds = " or ".join(b.__name__ for b in base)
        raise RunError(f"{source} uses {module}.{name}, which is not a Keras {kinds} class")
    try:
        registrable_name(obj)
    except ValueError as exc:
        raise RunError(f"{source}: {exc}") from None
    return obj
