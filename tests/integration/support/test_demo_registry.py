"""scripts/demo-registry: idempotent start, the two demo images, stop by pid, status codes."""

import os
import shutil
import subprocess
import tempfile
from typing import Dict, Iterator

import pytest
from support import images, procs
from support.pusher import RegistryClient, sha256_digest

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(CHECKOUT, "scripts", "demo-registry")


@pytest.fixture
def demo_env() -> Iterator[Dict[str, str]]:
    """A private state dir and a free port, so the real demo registry (port 5000) is left alone."""
    state = tempfile.mkdtemp(prefix="berth-demo-registry-test-", dir="/var/tmp")
    env = {**os.environ, "BERTH_DEMO_REGISTRY_DIR": state, "BERTH_DEMO_REGISTRY_PORTS": str(procs.free_port())}
    yield env
    subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, check=False)
    shutil.rmtree(state, ignore_errors=True)


def _run(env: Dict[str, str], command: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, command], env=env, capture_output=True, text=True, check=False, timeout=600)


@pytest.mark.slow
def test_demo_registry_life_cycle(demo_env: Dict[str, str]) -> None:
    assert _run(demo_env, "status").returncode == 3
    started = _run(demo_env, "start")
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().splitlines()[-1]
    assert url == f"http://127.0.0.1:{demo_env['BERTH_DEMO_REGISTRY_PORTS']}"
    status = _run(demo_env, "status")
    assert status.returncode == 0
    pid = int(status.stdout.split("(pid ")[1].split(")")[0])
    assert procs.cmdline(pid)[0].endswith("docker-registry")

    with RegistryClient(url) as client:
        for repo, fixture in (("library/nginx", images.nginx_images()), ("library/busybox", images.busybox_images())):
            response = client.get_manifest(repo, "latest")
            assert response.status_code == 200
            assert sha256_digest(response.content) == fixture.image("latest").manifest_digest("oci")

    again = _run(demo_env, "start")
    assert again.returncode == 0
    assert "pushing" not in again.stdout, "a second start pushes nothing"
    assert f"(pid {pid})" in _run(demo_env, "status").stdout, "a second start keeps the running registry"
    assert _run(demo_env, "address").stdout.strip() == url.removeprefix("http://")

    stopped = _run(demo_env, "stop")
    assert f"stopped pid {pid}" in stopped.stdout
    assert procs.cmdline(pid) == []
    assert _run(demo_env, "status").returncode == 3
    assert "not running" in _run(demo_env, "stop").stdout


def test_demo_registry_usage() -> None:
    result = subprocess.run([SCRIPT, "restart-everything"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "usage: scripts/demo-registry start|stop|status|address" in result.stderr
