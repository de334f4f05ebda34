"""Checking a config's dotted import paths without importing anything.

`mypkg.losses.Focal` in a config names the user's own code. `dlcli
validate` runs no code, so it cannot import the module to see whether the
class is there; instead it finds the module's file the way Python's import
system would (`importlib.machinery.PathFinder`, which reads folders and
does not execute packages) and reads the names the file defines with
`ast`. A module it cannot read that way (compiled, or defining names
dynamically) is accepted; the import at build time then decides.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.machinery import PathFinder, SourceFileLoader
from pathlib import Path
from typing import Any, Callable, Optional

from dlcli.config.suggest import did_you_mean

IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def is_import_path(name: Any) -> bool:
    """True for a dotted import path such as `mypkg.layers.Gate`."""
    return isinstance(name, str) and bool(IMPORT_PATH.match(name))


def _find_spec(module: str) -> Any:
    """The import spec of `module`, found folder by folder (no package's
    `__init__` runs), or None."""
    search: Optional[list[str]] = None
    spec = None
    for i, _ in enumerate(parts := module.split(".")):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    return spec


def module_file(module: str) -> Optional[Path]:
    """The source file `module` would be imported from, found without
    importing it or its packages; None when it is not found as source."""
    if module in sys.modules:
        found = getattr(sys.modules[module], "__file__", None)
        return Path(found) if found else None
    spec = _find_spec(module)
    if spec is None or not isinstance(spec.loader, SourceFileLoader) or not spec.origin:
        return None
    return Path(spec.origin)


def _defined(path: Path) -> Optional[tuple[set[str], set[str]]]:
    """(classes, other names) a module file defines; None when it defines
    names at run time (`__getattr__`, `import *`) or cannot be parsed."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    classes: set[str] = set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes.add(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == "__getattr__":
                return None
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" for a in node.names):
                return None
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return classes, names


def check_import_path(path: str, key: str, fail: Callable[..., Exception], *, kind: str, functions: bool = False) -> None:
    """Check that `path` names a class (or, with `functions`, a function) in
    a module that can be found.

    Args:
        path: the dotted path as written.
        key: the dotted key path, for the error.
        fail: `fail(key, message, hint)` returns the ConfigError to raise.
        kind: "layer", "loss", ... for messages.
        functions: whether a function is acceptable (losses, metrics).

    Raises:
        ConfigError: a malformed path, a module that is not there, or a
            module without that name (with the closest it has).
    """
    if not is_import_path(path):
        raise fail(key, f"'{path}' is not a valid import path", "write package.module.ClassName")
    module, _, attr = path.rpartition(".")
    try:
        where = module_file(module)
    except (ImportError, ValueError):
        where = None
    if where is None:
        if module in sys.modules or _find_spec(module) is not None:
            return
        raise fail(key, f"cannot find module '{module}' for custom {kind} '{path}'",
                   "is the package installed, or its folder on PYTHONPATH?")
    found = _defined(where)
    if found is None:
        return
    classes, names = found
    if attr in classes or (attr in names):
        return
    candidates = sorted(classes | (names if functions else set()))
    raise fail(key, f"module '{module}' has no {kind} '{attr}'",
               did_you_mean(attr, candidates) or (f"it defines: {', '.join(candidates[:12])}" if candidates else None))



# Packages whose `module:` Keras resolves itself.
_KERAS_PACKAGES = ("keras", "keras_hub", "keras_cv", "keras_nlp", "tf_keras", "dlcli")


def user_path(ref: Any) -> Optional[tuple[str, dict[str, Any]]]:
    """The dotted path and arguments of a reference to the user's own code.

    Accepted: `pkg.mod.Name`; `{class_name: pkg.mod.Name, config: {...}}`;
    `{pkg.mod.Name: {...}}`; and Keras's serialized form of a registered
    class, `{module: pkg.mod, class_name: Name, registered_name:
    'Package>Name', config: {...}}`.

    Returns:
        (path, config), or None when `ref` names Keras's own object.
    """
    if isinstance(ref, str):
        return (ref, {}) if is_import_path(ref) else None
    if not isinstance(ref, dict):
        return None
    if "class_name" not in ref and len(ref) == 1:
        ((name, config),) = ref.items()
    else:
        name, config = ref.get("class_name"), ref.get("config")
    module = ref.get("module")
    if isinstance(module, str) and isinstance(name, str) and module.split(".")[0] not in _KERAS_PACKAGES and is_import_path(f"{module}.x"):
        name = f"{module}.{name.rsplit('>', 1)[-1]}"
    if is_import_path(name) and (config is None or isinstance(config, dict)):
        return str(name), dict(config or {})
    return None
