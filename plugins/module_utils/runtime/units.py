"""systemd units that bring containers with a restart policy back after a reboot.

A container whose restart policy is ``always``, ``unless-stopped`` or
``on-failure`` gets ``/etc/systemd/system/berth-<name>.service``, which starts
it (``berth start``) at boot and stops it at shutdown.  The unit is written
only when its content differs, ``systemctl daemon-reload`` runs only then,
and it goes away with the container.
"""

import contextlib
import os
from typing import Any, Optional

UNIT_DIR = "/etc/systemd/system"


def systemd_running() -> bool:
    """systemd is PID 1 (the check sd_booted() does)."""
    return os.path.isdir("/run/systemd/system")


def daemon_reload() -> None:
    import shutil
    import subprocess

    systemctl = shutil.which("systemctl")
    if systemctl and systemd_running():
        subprocess.run([systemctl, "daemon-reload"], check=False, capture_output=True)


def remove_unit(config: Any, container_name: str) -> bool:
    """Remove the unit of a container (and its enablement); True if there was one."""
    path = os.path.join(unit_dir(config), unit_name(container_name))
    link = os.path.join(unit_dir(config), "multi-user.target.wants", unit_name(container_name))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    daemon_reload()
    return True


def unit_dir(config: Any) -> str:
    """Where units go: ``/etc/systemd/system`` (``unit-dir`` in daemon.json moves it, for tests)."""
    return str(config.extra.get("unit-dir") or UNIT_DIR)


def unit_name(container_name: str) -> str:
    return f"berth-{container_name}.service"


def wants_boot(restart_policy: str) -> bool:
    return restart_policy.partition(":")[0] in ("always", "unless-stopped", "on-failure")


def unit_content(config: Any, name: str, restart_policy: str, python: str, library: str) -> str:
    """The unit that starts container *name* at boot (``berth start --boot`` applies its restart policy)."""
    entry = f"import sys; sys.path.insert(0, '{library}'); from runtime.cli import main; sys.exit(main())"
    berth = f'{python} -I -c "{entry}"'
    config_arg = f" --config {config.path}" if config.path else ""
    return (
        f"# Written by Berth for the container {name}: brings it back after a reboot\n"
        f"# (restart policy {restart_policy}). Removed with the container.\n"
        "[Unit]\n"
        f"Description=Berth container {name}\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={berth}{config_arg} start --boot {name}\n"
        f"ExecStop={berth}{config_arg} stop {name}\n"
        "TimeoutStopSec=70\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def ensure_unit(
    config: Any, name: str, restart_policy: str, python: str, library: str, check_mode: bool = False
) -> Optional[str]:
    """Write (and enable) the unit of container *name* when its content differs; return its path if (to be) written."""
    directory = unit_dir(config)
    path = os.path.join(directory, unit_name(name))
    content = unit_content(config, name, restart_policy, python, library)
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == content:
                return None
    except FileNotFoundError:
        pass
    if check_mode:
        return path
    from .fsutil import makedirs, write_atomic

    makedirs(directory, 0o755)
    write_atomic(path, content.encode(), 0o644)
    wants = os.path.join(directory, "multi-user.target.wants")
    makedirs(wants, 0o755)
    link = os.path.join(wants, unit_name(name))
    if not os.path.islink(link):
        os.symlink(os.path.join("..", unit_name(name)), link)
    daemon_reload()
    return path
