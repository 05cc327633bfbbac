"""``import requests`` without loading the parts Berth never uses.

requests imports a character-set detector (``charset_normalizer`` or
``chardet``) for ``Response.text`` of bodies that name no charset, and
``idna`` for non-ASCII host names; urllib3 2.x imports ``importlib.metadata``
(with zipfile, pathlib, email...) only to check the version of ``h2`` when
someone turns HTTP/2 on.  Berth reads registry bodies as bytes and JSON and
speaks HTTP/1.1, so none of these runs on its paths, yet importing them cost
10-20 ms of every registry command's start-up (``-X importtime``; a warm
``berth pull`` is about 100 ms in all).

Before the first ``import requests``, each is put in ``sys.modules`` as a
stand-in that imports the real module on the first use of any attribute:
requests behaves exactly as before wherever one is needed.  What requests
and urllib3 take from them while they are imported is on the stand-in
already: the detector's ``__version__`` (read from the package's
``version.py`` without importing it; where that file cannot be read,
nothing is deferred) and ``importlib.metadata.version``, a function that
loads the real module when called.
"""

import os
import re
import sys
import threading
import types
from typing import Any, Callable, Optional, Sequence, Tuple

# (module, whether requests reads its __version__ at import time, functions imported from it by name)
DEFERRED: Tuple[Tuple[str, bool, Sequence[str]], ...] = (
    ("charset_normalizer", True, ()),
    ("chardet", True, ()),
    ("idna", False, ()),
    ("importlib.metadata", False, ("version",)),
)

_VERSION = re.compile(r"""^__version__\s*=\s*["']([0-9][^"']*)["']""", re.MULTILINE)
_lock = threading.RLock()
_importing_requests = threading.Event()


class DeferredModule(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then becomes a view of it.

    While requests itself is imported, the stand-in is a plain module: the
    import system's ``__path__`` probe of ``from x import name`` must not
    load the package.  After that, the probe (a submodule import by anyone)
    loads it like any other attribute.
    """

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "__path__" and _importing_requests.is_set():
            raise AttributeError(attribute)
        real = _load(self)
        return getattr(real, attribute)


def _load(stand_in: DeferredModule) -> types.ModuleType:
    import importlib

    with _lock:
        name = stand_in.__name__
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        real = importlib.import_module(name)
        stand_in.__dict__.update(real.__dict__)  # holders of the stand-in (requests.compat) now see the module
        return real


def _deferred_function(stand_in: DeferredModule, attribute: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_load(stand_in), attribute)(*args, **kwargs)

    call.__name__ = attribute
    return call


def _package_version(locations: Sequence[str]) -> Optional[str]:
    if not locations:
        return None
    try:
        with open(os.path.join(locations[0], "version.py"), encoding="utf-8") as handle:
            found = _VERSION.search(handle.read(65536))
    except (OSError, UnicodeDecodeError):
        return None
    return found.group(1) if found else None


def defer(name: str, needs_version: bool, functions: Sequence[str] = ()) -> bool:
    """Put a stand-in for the installed module *name* in ``sys.modules``; False when it is not deferred."""
    from importlib.machinery import PathFinder

    with _lock:
        if name in sys.modules:
            return False
        parent_name, _dot, child = name.rpartition(".")
        parent = sys.modules.get(parent_name) if parent_name else None
        if parent_name and parent is None:
            return False
        spec = PathFinder.find_spec(name, getattr(parent, "__path__", None))
        if spec is None:
            return False  # not installed: requests does without it
        stand_in = DeferredModule(name)
        if needs_version:
            version = _package_version(list(spec.submodule_search_locations or []))
            if version is None:
                return False
            stand_in.__version__ = version  # type: ignore[attr-defined]
        for function in functions:
            setattr(stand_in, function, _deferred_function(stand_in, function))
        sys.modules[name] = stand_in
        if parent is not None:
            setattr(parent, child, stand_in)  # `import a.b` then `a.b.x` must find it, as after a real import
        return True


def import_requests() -> types.ModuleType:
    """The ``requests`` module, imported (the first time) with its unused dependencies deferred."""
    if "requests" not in sys.modules:
        with _lock:
            if "requests" not in sys.modules:
                for name, needs_version, functions in DEFERRED:
                    defer(name, needs_version, functions)
                _importing_requests.set()
                try:
                    import requests
                finally:
                    _importing_requests.clear()
    import requests

    return requests
