"""engine_info as Ansible runs it, against a unix-socket server replaying a real dockerd's answers."""

import http.server
import json
import os
import socketserver
import tempfile
import threading
from typing import Any, Dict, Iterator, Tuple

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.berth.containers.plugins.modules import engine_info

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "module_utils", "engine", "fixtures")


def _answers() -> Dict[str, bytes]:
    answers = {"/_ping": b"OK"}
    for name in ("info", "version"):
        with open(os.path.join(FIXTURES, f"docker-20.10-{name}.json"), "rb") as handle:
            answers[f"/{name}"] = handle.read()
    return answers


class _Handler(http.server.BaseHTTPRequestHandler):
    answers = _answers()

    def do_GET(self) -> None:
        body = self.answers.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def socket_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="berth-info-") as directory:
        yield os.path.join(directory, "docker.sock")


def run(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Tuple[Dict[str, Any], int]:
    with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit) as exited:
        engine_info.main()
    return json.loads(capsys.readouterr().out), int(exited.value.code or 0)


@pytest.mark.parametrize("check", [False, True])
def test_reports_what_docker_info_shows(capsys, socket_path: str, check: bool) -> None:
    server = _Server(socket_path, _Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        result, code = run(capsys, {"docker_host": f"unix://{socket_path}"}, check=check)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, result
    assert result["changed"] is False
    engine = result["engine"]
    assert engine["server_version"] == "20.10.24+dfsg1"
    assert engine["registry_mirrors"] == ["https://mirror.example.com/", "http://10.1.2.3:5000/"]
    assert engine["insecure_registries"] == ["registry.local:5000", "10.0.0.0/8", "127.0.0.0/8"]
    assert engine["storage_driver"] == "overlay2"
    assert engine["cgroup_driver"] == "cgroupfs"
    assert result["info"]["ServerVersion"] == "20.10.24+dfsg1"
    assert result["version"]["ApiVersion"] == "1.41"


def test_waits_for_a_daemon_that_starts_late(capsys, socket_path: str) -> None:
    servers = []

    def start() -> None:
        server = _Server(socket_path, _Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    timer = threading.Timer(0.5, start)
    timer.start()
    try:
        result, code = run(capsys, {"docker_host": f"unix://{socket_path}", "wait_timeout": 20})
    finally:
        timer.join()
        for server in servers:
            server.shutdown()
            server.server_close()
    assert code == 0, result
    assert result["waited"] >= 0.4
    assert result["engine"]["server_version"] == "20.10.24+dfsg1"


def test_daemon_down_is_a_clear_error(capsys, socket_path: str) -> None:
    result, code = run(capsys, {"docker_host": f"unix://{socket_path}", "wait_timeout": 0.3})
    assert code == 1
    assert result["msg"] == (
        f"no Docker daemon answers on unix://{socket_path} (the socket does not exist): is the docker service "
        "running? (systemctl status docker; journalctl -u docker) (waited 0.3s)"
    )


def test_tcp_hosts_are_refused(capsys) -> None:
    result, code = run(capsys, {"docker_host": "tcp://127.0.0.1:2375"})
    assert code == 1
    assert "give the daemon's unix socket, like unix:///var/run/docker.sock" in result["msg"]
