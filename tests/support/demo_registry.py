"""``scripts/demo-registry start|stop|status|address``: the long-lived registry of ``make demo``.

A plain-HTTP ``docker-registry`` on 127.0.0.1, port 5000 or the first free of
a few fixed ports (the port it had last time is preferred, so its address
stays put), state under /var/tmp/berth-demo-registry, serving
``library/nginx:latest`` (Debian + nginx-light) and ``library/busybox:latest``,
pushed when missing or different.  ``start`` is idempotent; ``stop`` ends only
the pid recorded at start (after checking it is still that registry) and keeps
the storage, so the next ``start`` is quick.

Environment: ``BERTH_DEMO_REGISTRY_DIR`` (state directory),
``BERTH_DEMO_REGISTRY_PORTS`` (space-separated candidate ports).
"""

import os
import sys
from typing import List, Optional

from . import images, procs, pusher
from .cache import _locked
from .registry import Registry

STATE_DIR = os.environ.get("BERTH_DEMO_REGISTRY_DIR", "/var/tmp/berth-demo-registry")
PORTS = [int(p) for p in os.environ.get("BERTH_DEMO_REGISTRY_PORTS", "5000 5001 5002 5003 5004").split()]
IMAGES = (("library/busybox", images.busybox_images), ("library/nginx", images.nginx_images))
USAGE = "usage: scripts/demo-registry start|stop|status|address"


def _say(message: str) -> None:
    print(f"demo-registry: {message}", flush=True)


def _choose_port(previous: Optional[int]) -> int:
    candidates = ([previous] if previous else []) + [p for p in PORTS if p != previous]
    for port in candidates:
        if procs.port_is_free(port):
            return port
    raise SystemExit(f"demo-registry: none of the ports {' '.join(map(str, PORTS))} on 127.0.0.1 is free")


def _ensure_images(reg: Registry) -> None:
    with reg.client() as client:
        for repository, build in IMAGES:
            fixture = build()
            image = fixture.image("latest")
            response = client.get_manifest(repository, "latest")
            if response.status_code == 200 and pusher.sha256_digest(response.content) == image.manifest_digest("oci"):
                continue
            _say(f"pushing {repository}:latest")
            pusher.push(client, repository, image, "latest", "oci")


def start() -> int:
    os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
    with _locked(os.path.join(STATE_DIR, "lock")):
        reg = Registry.from_state(STATE_DIR)
        if reg is None or not reg.running:
            previous = reg.port if reg else None
            reg = Registry("plain", state_dir=STATE_DIR, port=_choose_port(previous), die_with_parent=False)
            reg.start()
            _say(f"started {reg.url} (pid {reg.pid}) in {reg.start_seconds:.2f} s")
        _ensure_images(reg)
        _say(f"serving {', '.join(f'{reg.host}/{repo}:latest' for repo, build in IMAGES)}")
        print(reg.url)
    return 0


def stop() -> int:
    with _locked(os.path.join(STATE_DIR, "lock")):
        reg = Registry.from_state(STATE_DIR) if os.path.isdir(STATE_DIR) else None
        if reg is None or not reg.running:
            _say("not running")
            return 0
        pid = reg.pid
        reg.stop()
        _say(f"stopped pid {pid}")
    return 0


def status(address_only: bool = False) -> int:
    reg = Registry.from_state(STATE_DIR) if os.path.isdir(STATE_DIR) else None
    if reg is None or not reg.running:
        if not address_only:
            print("stopped")
        return 3
    print(reg.host if address_only else f"running {reg.url} (pid {reg.pid}), state in {STATE_DIR}")
    return 0


def main(argv: List[str]) -> int:
    commands = {"start": start, "stop": stop, "status": status, "address": lambda: status(address_only=True)}
    if len(argv) != 1 or argv[0] not in commands:
        print(USAGE, file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
