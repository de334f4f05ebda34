"""Helpers shared by the model stage: located errors, close names, and the
argument check Keras lacks.

Keras reports a misspelled constructor argument as "Could not locate
class" (through `deserialize`) or "Unrecognized keyword arguments" (through
the constructor) with no suggestion; `check_kwargs` reads the constructor's
own signature instead, so the message can say which argument is wrong and
which one was meant.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Iterable, Mapping, Optional

from dlcli.config.suggest import closest, did_you_mean
from dlcli.errors import cfg_error

__all__ = [
    "cfg_error",
    "closest",
    "did_you_mean",
    "accepted_kwargs",
    "check_kwargs",
    "import_dotted",
    "user_object",
    "short_message",
    "public_names",
]


def short_message(exc: BaseException, limit: int = 400) -> str:
    """Keras's message for `exc`, cut to its first paragraph, on one line.

    Keras appends "Arguments received by ..." blocks and full configs to
    its messages; the first paragraph says what went wrong.
    """
    text = str(exc).strip() or type(exc).__name__
    text = text.split("\n\n")[0]
    text = " ".join(text.split())
    # Keras wraps call errors as "Exception encountered when calling X.call().".
    text = re.sub(r"^Exception encountered when calling [\w.]+\(\)\.\s*", "", text)
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def accepted_kwargs(cls: type) -> tuple[Optional[set[str]], set[str]]:
    """Read which keyword arguments `cls(...)` accepts and which it needs.

    The same signature walk the Keras catalogue is generated with
    (`dlcli.config.catalog.generate.constructor_args`), so `dlcli validate`
    and the builder agree: `Conv2D` accepts `filters` (its own), BaseConv's
    arguments and Layer's `name`, `dtype`, `trainable`, ...

    Args:
        cls: a Keras layer, callback or optimizer class (or a custom one).

    Returns:
        (accepted, required): accepted is None when some `__init__` in the
        chain takes `**kwargs` without a known end (anything may be valid);
        required are the first constructor's arguments without a default.
    """
    from dlcli.config.catalog.generate import constructor_args

    info = constructor_args(cls)
    return (None if info["open"] else set(info["args"])), set(info["required"])


def check_kwargs(
    cls: type,
    kwargs: Mapping[str, Any],
    *,
    cfg: Any,
    key: str,
    what: Optional[str] = None,
    extra: Iterable[str] = (),
) -> None:
    """Raise a located ConfigError for unknown or missing constructor arguments.

    Args:
        cls: the class about to be constructed.
        kwargs: the arguments the config gives it.
        cfg: the Config, for the error's location.
        key: the dotted key path of the entry.
        what: the name to show (default: the class name).
        extra: further argument names the caller handles itself.

    Raises:
        ConfigError: "Conv2D has no argument 'filtres' (did you mean
            'filters'?)", or "Conv2D needs argument(s) 'kernel_size'".
    """
    what = what or cls.__name__
    accepted, required = accepted_kwargs(cls)
    if accepted is not None:
        valid = accepted | set(extra)
        for arg in kwargs:
            if arg not in valid:
                raise cfg_error(
                    cfg, key, f"{what} has no argument '{arg}'",
                    hint=did_you_mean(arg, sorted(valid)) or f"its arguments are: {', '.join(sorted(valid - {'self'}))}",
                )
    missing = sorted(required - set(kwargs))
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        raise cfg_error(cfg, key, f"{what} needs argument{'s' if len(missing) > 1 else ''} {names}",
                        hint=f"write it as {what}: {{{missing[0]}: ...}}")


def import_dotted(path: str, *, cfg: Any, key: str, kind: str, base: type, functions: bool = False) -> Any:
    """Import `package.module.ClassName` and check it subclasses `base`.

    Args:
        path: the dotted path as written in the config.
        cfg: the Config, for error locations.
        key: the entry's key path.
        kind: "layer" or "callback", for messages.
        base: the class the import must subclass.
        functions: whether a plain function is acceptable too (losses,
            metrics, initializers, regularizers, constraints).

    Raises:
        ConfigError: the module cannot be imported, lacks the attribute, or
            the attribute is not a `base` subclass.
    """
    from dlcli.model.trust import check_config_import

    check_config_import(path, cfg=cfg, key=key)  # a run folder's config imports only what the user trusts
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise cfg_error(cfg, key, f"cannot import module '{module_name}' for custom {kind} '{path}': {exc}",
                        hint="is the package installed, or its folder on PYTHONPATH?") from None
    obj = getattr(module, attr, None)
    if obj is None:
        candidates = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, base)]
        raise cfg_error(cfg, key, f"module '{module_name}' has no {kind} class '{attr}'",
                        hint=did_you_mean(attr, candidates))
    if functions and callable(obj) and not isinstance(obj, type):
        return obj
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise cfg_error(cfg, key, f"'{path}' is not a Keras {kind} class (a subclass of keras.{kind}s.{base.__qualname__})")
    return obj


def user_object(ref: Any, *, cfg: Any, key: str, kind: str, base: type) -> Any:
    """The user's own class (constructed with its config) or function that a
    reference names by dotted path, or None when it names Keras's own.

    See `dlcli.config.imports.user_path` for the forms accepted. The class
    is registered with Keras under the name it is saved with, so the model
    file reloads in this process.

    Raises:
        ConfigError: located at `key`: not importable, not a `base`
            subclass or function, unknown or rejected arguments.
    """
    import keras

    from dlcli.config.imports import user_path

    found = user_path(ref)
    if found is None:
        return None
    path, config = found
    obj = import_dotted(path, cfg=cfg, key=key, kind=kind, base=base, functions=True)
    keras.saving.get_custom_objects().setdefault(keras.saving.get_registered_name(obj), obj)
    if not isinstance(obj, type):
        if config:
            raise cfg_error(cfg, key, f"'{path}' is a function and takes no config", hint="write a class to give it arguments")
        return obj
    check_kwargs(obj, config, cfg=cfg, key=key, what=path)
    try:
        return obj(**config)
    except (ValueError, TypeError, KeyError) as exc:
        raise cfg_error(cfg, key, f"{path} rejected its arguments: {short_message(exc)}") from None


def public_names(module: Any) -> list[str]:
    """The public names a Keras module exports (its registry, as Keras sees it)."""
    skip = {"get", "serialize", "deserialize"}
    return [n for n in dir(module) if not n.startswith("_") and n not in skip]
