"""The unix-socket client against a real HTTP server on a unix socket."""

import http.server
import json
import os
import socketserver
import tempfile
import threading
import time
from typing import Iterator, Tuple

import pytest

from ansible_collections.berth.containers.plugins.module_utils.engine import docker_api
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/_ping": (200, b"OK", "text/plain"),
            "/info": (200, json.dumps({"ServerVersion": "27.3.1"}).encode(), "application/json"),
            "/broken": (200, b"not json", "application/json"),
            "/missing": (404, json.dumps({"message": "page not found"}).encode(), "application/json"),
        }
        status, body, kind = routes.get(self.path, (500, b"", "text/plain"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: object) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _serve(path: str) -> _UnixServer:
    server = _UnixServer(path, _Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def socket_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="berth-sock-") as directory:
        yield directory


@pytest.fixture
def daemon(socket_dir: str) -> Iterator[Tuple[str, _UnixServer]]:
    path = os.path.join(socket_dir, "docker.sock")
    server = _serve(path)
    try:
        yield path, server
    finally:
        server.shutdown()
        server.server_close()


def test_ping_and_json(daemon: Tuple[str, _UnixServer]) -> None:
    client = docker_api.DockerSocketClient(f"unix://{daemon[0]}", timeout=5)
    assert client.ping() == "OK"
    assert client.get_json("/info") == {"ServerVersion": "27.3.1"}


def test_daemon_errors_carry_its_message(daemon: Tuple[str, _UnixServer]) -> None:
    client = docker_api.DockerSocketClient(daemon[0], timeout=5)
    with pytest.raises(docker_api.DaemonError, match="answered GET /missing with HTTP 404: page not found"):
        client.get_json("/missing")
    with pytest.raises(docker_api.DaemonError, match="is not JSON"):
        client.get_json("/broken")


def test_missing_socket_says_the_daemon_is_down(socket_dir: str) -> None:
    host = f"unix://{socket_dir}/docker.sock"
    client = docker_api.DockerSocketClient(host, timeout=1)
    with pytest.raises(docker_api.DaemonUnavailable) as caught:
        client.ping()
    assert str(caught.value).startswith(f"no Docker daemon answers on {host} (the socket does not exist)")
    assert "is the docker service running?" in str(caught.value)


def test_stale_socket_file_is_connection_refused(socket_dir: str) -> None:
    path = os.path.join(socket_dir, "docker.sock")
    server = _serve(path)
    server.shutdown()
    server.server_close()  # the socket file stays, nobody listens: a crashed daemon
    assert os.path.exists(path)
    with pytest.raises(docker_api.DaemonUnavailable, match="connection refused"):
        docker_api.DockerSocketClient(path, timeout=1).ping()


def test_regular_file_is_not_a_socket(socket_dir: str) -> None:
    path = os.path.join(socket_dir, "docker.sock")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("x")
    with pytest.raises(docker_api.DaemonUnavailable, match=r"(not a socket|connection refused)"):
        docker_api.DockerSocketClient(path, timeout=1).ping()


def test_wait_for_a_daemon_that_comes_up_late(socket_dir: str) -> None:
    path = os.path.join(socket_dir, "docker.sock")
    servers = []
    timer = threading.Timer(0.4, lambda: servers.append(_serve(path)))
    timer.start()
    try:
        waited = docker_api.wait_for_daemon(
            docker_api.DockerSocketClient(path, timeout=2), wait_timeout=10, interval=0.05
        )
        assert 0.3 <= waited < 5
    finally:
        timer.join()
        for server in servers:
            server.shutdown()
            server.server_close()


def test_wait_gives_up_after_the_timeout(socket_dir: str) -> None:
    client = docker_api.DockerSocketClient(f"{socket_dir}/docker.sock", timeout=1)
    started = time.monotonic()
    with pytest.raises(docker_api.DaemonUnavailable, match=r"the socket does not exist.*\(waited 0.3s\)"):
        docker_api.wait_for_daemon(client, wait_timeout=0.3, interval=0.05)
    assert 0.25 <= time.monotonic() - started < 2


def test_wait_zero_asks_once() -> None:
    calls = []

    class Client:
        def ping(self) -> str:
            calls.append(1)
            raise docker_api.DaemonUnavailable("no Docker daemon answers on unix:///x")

    with pytest.raises(docker_api.DaemonUnavailable, match=r"^no Docker daemon answers on unix:///x$"):
        docker_api.wait_for_daemon(Client(), wait_timeout=0)  # type: ignore[arg-type]
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("host", "path"),
    [("unix:///var/run/docker.sock", "/var/run/docker.sock"), ("/run/docker.sock", "/run/docker.sock")],
)
def test_socket_paths(host: str, path: str) -> None:
    assert docker_api.socket_path(host) == path


@pytest.mark.parametrize("host", ["tcp://127.0.0.1:2375", "ssh://host", "unix://relative.sock"])
def test_unsupported_hosts_are_refused(host: str) -> None:
    with pytest.raises(InvalidArgument, match="docker_host"):
        docker_api.socket_path(host)
