"""``import requests`` without loading the parts Berth never uses.

requests imports a character-set detector (``charset_normalizer`` or
``chardet``) for ``Response.text`` of bodies that name no charset, and
``idna`` for non-ASCII host names.  Berth reads registry bodies as bytes
and JSON, so neither runs on its paths, yet importing them cost 5-12 ms of
every registry command's start-up (``-X importtime``; a warm ``berth pull``
is about 100 ms in all).  Before the first ``import requests``, each is put
in ``sys.modules`` as a stand-in that imports the real module on the first
use of any attribute: requests behaves exactly as before wherever one is
needed.  requests checks the detector's ``__version__`` while it is imported,
so the stand-in carries it, read from the package's ``version.py`` without
importing the package; where that file cannot be read, nothing is deferred.
"""

import os
import re
import sys
import threading
import types
from typing import Any, Optional

# (module, whether requests reads its __version__ at import time)
DEFERRED = (("charset_normalizer", True), ("chardet", True), ("idna", False))

_VERSION = re.compile(r"""^__version__\s*=\s*["']([0-9][^"']*)["']""", re.MULTILINE)
_lock = threading.RLock()
_importing_requests = threading.Event()


class DeferredModule(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then becomes a view of it.

    While requests itself is imported, the stand-in is a plain module: the
    import system's ``__path__`` probe of ``from x import __version__`` must
    not load the package.  After that, the probe (a submodule import by
    anyone) loads it like any other attribute.
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


def _package_version(location: str) -> Optional[str]:
    try:
        with open(os.path.join(location, "version.py"), encoding="utf-8") as handle:
            found = _VERSION.search(handle.read(65536))
    except (OSError, UnicodeDecodeError):
        return None
    return found.group(1) if found else None


def defer(name: str, needs_version: bool) -> bool:
    """Put a stand-in for the installed package *name* in ``sys.modules``; False when it is not deferred."""
    from importlib.machinery import PathFinder

    with _lock:
        if name in sys.modules:
            return False
        spec = PathFinder.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            return False  # not installed (requests then does without), or not a plain package
        stand_in = DeferredModule(name)
        if needs_version:
            version = _package_version(locations[0])
            if version is None:
                return False
            stand_in.__version__ = version  # type: ignore[attr-defined]
        sys.modules[name] = stand_in
        return True


def import_requests() -> types.ModuleType:
    """The ``requests`` module, imported (the first time) with its unused dependencies deferred."""
    if "requests" not in sys.modules:
        with _lock:
            if "requests" not in sys.modules:
                for name, needs_version in DEFERRED:
                    defer(name, needs_version)
                _importing_requests.set()
                try:
                    import requests
                finally:
                    _importing_requests.clear()
    import requests

    return requests
