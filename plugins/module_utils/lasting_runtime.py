# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Import the runtime's modules from its lasting copy on the host, compiled once.

Ansible runs a module from a zip in a temporary directory, and ``zipimport``
never caches compiled code: every task compiled every runtime module it
imported, which was most of what a no-op ``container`` task cost beyond
Ansible's own work.  The runtime already keeps a copy of itself at a path that
lasts (``runtime.install.library_path``, for container monitors and boot
units), named by the hash of the payload's runtime files, so it holds exactly
the bytes of the payload.  That copy is byte-compiled once (explicitly, so
``PYTHONDONTWRITEBYTECODE`` in a login environment does not defeat it) and put
first on the runtime package's search path: every later import of a runtime
module comes from there, under the same module names -- classes and
exceptions are the very same objects -- and costs an unmarshal, not a compile.
"""

import os
from typing import Any


def prefer_lasting_copy(config: Any, install: bool = True) -> bool:
    """Import the runtime modules not loaded yet from the lasting copy; True if that is where they come from now.

    With *install* (not in check mode) the copy is installed and compiled when
    missing, on a host that has a data root already (a fresh host gets none
    for a task that may create nothing).  Otherwise, and when the copy cannot
    be written (a full disk), the payload's own modules serve, only slower.
    """
    from ansible_collections.berth.containers.plugins.module_utils import runtime
    from ansible_collections.berth.containers.plugins.module_utils.runtime.install import library_path

    install = install and os.path.isdir(config.data_root)
    try:
        package = os.path.join(library_path(config, install=install), "runtime")
        if any(os.path.realpath(path) == os.path.realpath(package) for path in runtime.__path__):
            return True  # imported from a lasting place already (a checkout, a host install)
        if not os.path.isfile(os.path.join(package, "install.py")):
            return False
        if not _compiled(package):
            if not install:
                return False
            import compileall

            compileall.compile_dir(package, maxlevels=0, quiet=2)
    except OSError:
        return False
    runtime.__path__.insert(0, package)
    return True


def _compiled(package: str) -> bool:
    from importlib.util import cache_from_source

    sources = [name for name in os.listdir(package) if name.endswith(".py")]
    return all(os.path.isfile(cache_from_source(os.path.join(package, name))) for name in sources)
