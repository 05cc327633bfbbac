"""Forwarding, hairpin NAT and masquerading, in a private "host" namespace (see support/net_sandbox.py).

ip_forward is per network namespace: the scenario turns it on in a sandbox,
never on this machine.  Another namespace on a veth link plays the remote
machine, so "reachable from another host" is tested without leaving the box.
"""

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import netns

SANDBOX = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "support", "net_sandbox.py")


def run_in_sandbox(backend: str, docker: bool) -> Dict[str, Any]:
    directory = tempfile.mkdtemp(prefix="berth-net-sandbox-", dir="/run")
    path = netns.create(os.path.join(directory, "host"))
    try:
        proc = subprocess.run(
            ["nsenter", f"--net={path}", sys.executable, os.path.abspath(SANDBOX), backend]
            + (["--docker"] if docker else []),
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
            timeout=120,
            check=False,
        )
    finally:
        netns.delete(path)
        os.rmdir(directory)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("docker", [False, True], ids=["alone", "beside-dockerd"])
@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_hairpin_remote_clients_and_outbound_masquerade(backend: str, docker: bool) -> None:
    seen = run_in_sandbox(backend, docker)
    addresses = seen["addresses"]
    assert seen["info"]["ip_forward"] == {"configured": True, "enabled": True}
    assert seen["info"]["masquerade"] == {"configured": True, "active": True}
    assert seen["info"]["firewall_backend"] == backend
    assert seen["hairpin_self"] == f"hello one from {addresses['gateway']}\n"
    assert seen["hairpin_other"] == f"hello one from {addresses['gateway']}\n"
    assert seen["from_outside"] == "hello one from 10.232.0.2\n"
    assert seen["local_only_from_outside"].startswith("error:")
    assert seen["direct_from_outside"].startswith("error:"), "container addresses must not be routable from outside"
    assert seen["local_only_from_host"].startswith("hello one from")
    assert seen["outbound"] == f"hello outside from {addresses['sandbox']}\n"
    assert seen["links_after"] == ["lo"]
    if docker:
        assert len(seen["docker_user"]) == 2, seen["docker_user"]
        assert all("berth-base:" in rule for rule in seen["docker_user"])
    assert seen["docker_user_after"] == []
