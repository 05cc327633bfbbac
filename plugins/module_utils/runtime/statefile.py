"""Atomic replacement of small state files, durable or not.

Readers must only ever see the old or the new content of a container's
files, so every write is a rename of a complete temporary file.  Whether it
must also survive a power loss depends on the file: ``fsutil.write_atomic``
(fsync of the file and of its directory) for what a restarted host reads
again, a plain rename for what dies with the host anyway — the state of a
``--rm`` container, the ``/etc`` files regenerated at every start.  Skipping
the fsyncs keeps ``run --rm`` off the journal of the data root's filesystem,
and this module imports nothing beyond ``os`` on that path.
"""

import contextlib
import os
from typing import Any

from . import fsutil


def replace_file(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Replace *path* with *data* atomically; with *durable*, also fsync it and its directory."""
    if durable:
        fsutil.write_atomic(path, data, mode)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def replace_json(path: str, value: Any, durable: bool = True) -> None:
    """Atomically write *value* as JSON in the same form as ``fsutil.write_json_atomic``."""
    import json

    replace_file(path, json.dumps(value, indent=2, sort_keys=True).encode() + b"\n", durable=durable)
