"""A copy of the runtime that outlives the process that started a container.

A container's monitor runs for as long as the container and later execs
back into the runtime's heavy code (clean-up, restarts); systemd units start
containers at boot.  Both need the runtime's files at a path that stays.  From
a checkout or a host install the package already lives at such a path.  An
Ansible module, however, runs from a temporary payload (a zip under
``~/.ansible/tmp``) that disappears when the module returns — so the files are
copied once to ``<data-root>/runtime/<content hash>/runtime/`` and used from
there.
"""

import hashlib
import os
import tempfile
from typing import Dict

from . import fsutil
from .config import DaemonConfig

PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _is_lasting(directory: str) -> bool:
    if not os.path.isfile(os.path.join(directory, "monitor.py")):
        return False
    temporary = (tempfile.gettempdir(), os.path.expanduser("~/.ansible/tmp"))
    return not any(directory.startswith(prefix.rstrip("/") + "/") for prefix in temporary) and (
        os.path.basename(directory) == "runtime"
    )


def _package_files() -> Dict[str, bytes]:
    """The runtime's own .py files, read from wherever they are (a directory or a zip payload)."""
    loader = globals().get("__loader__")
    archive = getattr(loader, "archive", None)
    files: Dict[str, bytes] = {}
    if archive:
        import zipfile

        prefix = os.path.relpath(PACKAGE, archive).replace(os.sep, "/") + "/"
        with zipfile.ZipFile(archive) as payload:
            for name in payload.namelist():
                if name.startswith(prefix) and name.endswith(".py") and "/" not in name[len(prefix) :]:
                    files[name[len(prefix) :]] = payload.read(name)
        return files
    for name in sorted(os.listdir(PACKAGE)):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE, name), "rb") as handle:
                files[name] = handle.read()
    return files


def library_path(config: DaemonConfig, install: bool = True) -> str:
    """A directory whose ``runtime/`` subdirectory is this runtime, at a path that lasts.

    With ``install=False`` (check mode) the path is only computed: nothing is copied.
    """
    if _is_lasting(PACKAGE):
        return os.path.dirname(PACKAGE)
    files = _package_files()
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    base = os.path.join(config.data_root, "runtime")
    target = os.path.join(base, digest.hexdigest()[:16])
    if not install or os.path.isfile(os.path.join(target, "runtime", "monitor.py")):
        return target
    fsutil.makedirs(base, 0o700)
    staging = tempfile.mkdtemp(prefix="tmp-", dir=base)
    try:
        package = os.path.join(staging, "runtime")
        os.mkdir(package, 0o755)
        for name, data in files.items():
            with open(os.path.join(package, name), "wb") as handle:
                handle.write(data)
    except BaseException:
        fsutil.remove_tree(staging)  # a full disk leaves no half copy behind
        raise
    try:
        os.rename(staging, target)
    except OSError:
        fsutil.remove_tree(staging)  # another process installed the same content first
    return target
