"""engine_repo as Ansible runs it, with keys served by a real HTTP server on loopback."""

import configparser
import http.server
import json
import os
import stat
import threading
from typing import Any, Dict, Iterator, List, Tuple
from unittest import mock

import pytest
from ansible.module_utils import _internal as ansible_module_internals
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.berth.containers.plugins.modules import engine_repo

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "module_utils", "engine", "fixtures")
DOCKER_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
TEST_FINGERPRINT = "8C3C5E570320CBE4D0B42783A7890F1795D07BE6"


def fixture_bytes(name: str) -> bytes:
    with open(os.path.join(FIXTURES, name), "rb") as handle:
        return handle.read()


class KeyServer:
    """Serves fixed paths on 127.0.0.1 and counts the requests."""

    def __init__(self) -> None:
        self.routes: Dict[str, Tuple[int, bytes]] = {}
        self.hits: List[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                status, body = outer.routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[KeyServer]:
    instance = KeyServer()
    try:
        yield instance
    finally:
        instance.close()


def run(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Tuple[Dict[str, Any], int]:
    # As in a module's own process: no earlier warnings, and not the controller's display.
    ansible_warnings._global_warnings.clear()
    with (
        mock.patch.object(ansible_module_internals, "is_controller", False),
        patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": True}),
        pytest.raises(SystemExit) as exited,
    ):
        engine_repo.main()
    return json.loads(capsys.readouterr().out), int(exited.value.code or 0)


def ok(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
    result, code = run(capsys, args, check)
    assert code == 0, result
    return result


def failed(capsys: pytest.CaptureFixture, args: Dict[str, Any]) -> str:
    result, code = run(capsys, args)
    assert code == 1, result
    return result["msg"]


def yum_args(tmp_path, **extra: Any) -> Dict[str, Any]:
    return {
        "distribution": "centos",
        "path": str(tmp_path / "yum.repos.d" / "docker-ce.repo"),
        "gpg_key_path": str(tmp_path / "rpm-gpg" / "docker-ce.asc"),
        **extra,
    }


def test_yum_mirror_rhythm_downloads_docker_key_from_the_mirror_once(tmp_path, capsys, server) -> None:
    server.routes["/docker-ce/linux/centos/gpg"] = (200, fixture_bytes("docker-ce.asc"))
    args = yum_args(tmp_path, base_url=f"{server.url}/docker-ce/", release="9")
    repo_path, key_path = args["path"], args["gpg_key_path"]

    predicted = ok(capsys, args, check=True)
    assert predicted["changed"] is True
    assert server.hits == [], "check mode must not download"
    assert not os.path.exists(repo_path)
    assert not os.path.exists(key_path)
    repo_diff, key_diff = predicted["diff"]
    assert repo_diff["before"] == ""
    assert f"baseurl={server.url}/docker-ce/linux/centos/9/$basearch/stable" in repo_diff["after"]
    assert key_diff["after"] == "(a key that check mode does not download)"
    assert predicted["gpg_fingerprint"] == ""

    applied = ok(capsys, args)
    assert applied["changed"] is True
    assert server.hits == ["/docker-ce/linux/centos/gpg"]
    assert applied["gpg_fingerprint"] == DOCKER_FINGERPRINT
    assert applied["repo_url"] == f"{server.url}/docker-ce/linux/centos/9/$basearch/stable"
    assert applied["diff"][0]["after"] == repo_diff["after"]
    assert applied["diff"][1]["after"] == f"OpenPGP public key {DOCKER_FINGERPRINT}\n"
    with open(key_path, "rb") as handle:
        assert handle.read() == fixture_bytes("docker-ce.asc")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(repo_path)
    assert parser["docker-ce-stable"]["enabled"] == "1"
    assert parser["docker-ce-stable"]["gpgkey"] == f"file://{key_path}"
    assert all(server.url in parser[section]["baseurl"] for section in parser.sections())
    for path in (repo_path, key_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644

    again = ok(capsys, args, check=True)
    assert again["changed"] is False
    assert "diff" not in again or again["diff"] == []
    assert ok(capsys, args)["changed"] is False
    assert server.hits == ["/docker-ce/linux/centos/gpg"], (
        "an installed key with the right fingerprint is not fetched again"
    )

    ok(capsys, {**args, "refresh_gpg_key": True})
    assert len(server.hits) == 2


def test_channel_change_is_a_change(tmp_path, capsys) -> None:
    args = yum_args(tmp_path, gpg_key=fixture_bytes("test-key.asc").decode())
    assert ok(capsys, args)["changed"] is True
    test_args = {**args, "channel": "test"}
    predicted = ok(capsys, test_args, check=True)
    assert predicted["changed"] is True
    assert len(predicted["diff"]) == 1
    assert "[docker-ce-test]\nname=Docker CE Test - $basearch\n" in predicted["diff"][0]["after"]
    applied = ok(capsys, test_args)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(applied["path"])
    assert (parser["docker-ce-stable"]["enabled"], parser["docker-ce-test"]["enabled"]) == ("0", "1")
    assert ok(capsys, test_args)["changed"] is False


def test_mirror_key_with_the_wrong_fingerprint_is_refused_and_nothing_written(tmp_path, capsys, server) -> None:
    server.routes["/linux/centos/gpg"] = (200, fixture_bytes("test-key.asc"))
    args = yum_args(tmp_path, base_url=server.url)
    message = failed(capsys, args)
    assert f"has fingerprint {TEST_FINGERPRINT}, not the expected {DOCKER_FINGERPRINT}" in message
    assert not os.path.exists(args["path"])
    assert not os.path.exists(args["gpg_key_path"])


def test_own_key_with_its_fingerprint(tmp_path, capsys, server) -> None:
    server.routes["/keys/repo.asc"] = (200, fixture_bytes("test-key.asc"))
    args = yum_args(
        tmp_path, base_url=server.url, gpg_key=f"{server.url}/keys/repo.asc", gpg_fingerprint=TEST_FINGERPRINT
    )
    assert ok(capsys, args)["gpg_fingerprint"] == TEST_FINGERPRINT
    wrong = {**args, "gpg_fingerprint": DOCKER_FINGERPRINT, "gpg_key_path": str(tmp_path / "other.asc")}
    assert "not the expected" in failed(capsys, wrong)


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ((404, b"missing"), "cannot download the GPG key from .*/linux/centos/gpg: HTTP 404"),
        ((200, b"<html>login</html>"), "is not an OpenPGP public key"),
    ],
)
def test_bad_key_downloads_are_clear_errors(tmp_path, capsys, server, route, message: str) -> None:
    import re

    server.routes["/linux/centos/gpg"] = route
    assert re.search(message, failed(capsys, yum_args(tmp_path, base_url=server.url)))


def test_apt_sources_rhythm_with_key_content(tmp_path, capsys) -> None:
    args = {
        "distribution": "debian",
        "release": "bookworm",
        "base_url": "https://mirrors.example.com/docker-ce",
        "gpg_key": fixture_bytes("test-key.asc").decode(),
        "path": str(tmp_path / "sources.list.d" / "docker.sources"),
        "gpg_key_path": str(tmp_path / "keyrings" / "docker.asc"),
    }
    predicted = ok(capsys, args, check=True)
    assert predicted["changed"] is True
    assert predicted["gpg_fingerprint"] == TEST_FINGERPRINT, "inline key content is known without downloading"
    assert predicted["diff"][1]["after"] == f"OpenPGP public key {TEST_FINGERPRINT}\n"
    assert not os.path.exists(args["path"])

    applied = ok(capsys, args)
    assert applied["changed"] is True
    with open(args["path"], encoding="utf-8") as handle:
        text = handle.read()
    assert text == applied["content"]
    assert "URIs: https://mirrors.example.com/docker-ce/linux/debian\n" in text
    assert "Suites: bookworm\nComponents: stable\n" in text
    assert f"Signed-By: {args['gpg_key_path']}\n" in text
    assert ok(capsys, args, check=True)["changed"] is False
    assert ok(capsys, args)["changed"] is False


def test_binary_key_file_on_the_target_is_installed_armored(tmp_path, capsys) -> None:
    source = tmp_path / "company.gpg"
    source.write_bytes(fixture_bytes("test-key.gpg"))
    args = yum_args(tmp_path, gpg_key=str(source))
    result = ok(capsys, args)
    assert result["gpg_fingerprint"] == TEST_FINGERPRINT
    with open(args["gpg_key_path"], "rb") as handle:
        assert handle.read().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert ok(capsys, args)["changed"] is False
    assert "does not exist on the target" in failed(capsys, {**args, "gpg_key": str(tmp_path / "nope.gpg")})


def test_state_absent_rhythm(tmp_path, capsys) -> None:
    args = yum_args(tmp_path, gpg_key=fixture_bytes("test-key.asc").decode())
    ok(capsys, args)
    absent = {**args, "state": "absent"}
    predicted = ok(capsys, absent, check=True)
    assert predicted["changed"] is True
    assert os.path.exists(args["path"])
    assert os.path.exists(args["gpg_key_path"])
    assert predicted["diff"][0]["after"] == ""
    assert "[docker-ce-stable]" in predicted["diff"][0]["before"]
    assert ok(capsys, absent)["changed"] is True
    assert not os.path.exists(args["path"])
    assert not os.path.exists(args["gpg_key_path"])
    assert ok(capsys, absent, check=True)["changed"] is False
    assert ok(capsys, absent)["changed"] is False


def test_hand_made_apt_list_for_the_same_repository_warns(tmp_path, capsys, monkeypatch) -> None:
    lists = tmp_path / "sources.list.d"
    lists.mkdir()
    (lists / "docker.list").write_text(
        "deb [signed-by=/usr/share/keyrings/docker.gpg] https://download.docker.com/linux/debian bookworm stable\n"
    )
    monkeypatch.setattr(engine_repo, "APT_LIST_DIR", str(lists))
    args = {
        "distribution": "debian",
        "release": "bookworm",
        "gpg_key": fixture_bytes("docker-ce.asc").decode(),
        "path": str(lists / "docker.sources"),
        "gpg_key_path": str(tmp_path / "docker.asc"),
    }
    result = ok(capsys, args)
    messages = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
    assert any(
        f"{lists / 'docker.list'} also configures https://download.docker.com/linux/debian" in m for m in messages
    )


def test_release_defaults(tmp_path, capsys) -> None:
    result = ok(capsys, yum_args(tmp_path, gpg_key=fixture_bytes("test-key.asc").decode()), check=True)
    assert result["release"] == "$releasever"
    assert "baseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stable" in result["content"]
