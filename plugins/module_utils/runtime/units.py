"""systemd units that bring containers with a restart policy back after a reboot.

A container whose restart policy is ``always``, ``unless-stopped`` or
``on-failure`` gets ``/etc/systemd/system/berth-<name>.service``, which starts
it (``berth start``) at boot and stops it at shutdown.  The unit is written
only when its content differs, ``systemctl daemon-reload`` runs only then,
and it goes away with the container.
"""

import contextlib
import os
import shutil
import subprocess
from typing import Any, Optional

UNIT_DIR = "/etc/systemd/system"


def systemd_running() -> bool:
    """systemd is PID 1 (the check sd_booted() does)."""
    return os.path.isdir("/run/systemd/system")


def daemon_reload() -> None:
    systemctl = shutil.which("systemctl")
    if systemctl and systemd_running():
        subprocess.run([systemctl, "daemon-reload"], check=False, capture_output=True)


def remove_unit(container: Any) -> bool:
    """Remove the container's unit if it has one; True if a file was removed."""
    path: Optional[str] = container.record.get("unit")
    if not path:
        return False
    removed = False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        removed = True
    if removed:
        daemon_reload()
    return removed
