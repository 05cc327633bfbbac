"""The registry fixture: every variant is a real, answering distribution registry."""

import os
import time
from typing import Callable

import pytest
import requests
from support import procs
from support.pusher import RegistryClient, sha256_digest
from support.registry import Registry

pytestmark = pytest.mark.registry


def _get(url: str, **kwargs: object) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_every_variant_answers_the_v2_ping_with_the_right_challenge(any_registry: Registry) -> None:
    response = _get(f"{any_registry.url}/v2/", verify=any_registry.verify)
    challenge = response.headers.get("WWW-Authenticate", "")
    if any_registry.auth is None:
        assert response.status_code == 200
        assert challenge == ""
    elif any_registry.auth == "basic":
        assert response.status_code == 401
        assert challenge.startswith("Basic realm=")
    else:
        assert response.status_code == 401
        assert challenge.startswith(f'Bearer realm="{any_registry.token_server.realm}"')
    assert response.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"
    assert any_registry.host.startswith("127.0.0.1:")
    assert procs.is_running(any_registry.pid, lambda argv: argv[-1] == any_registry.config_path)


@pytest.mark.parametrize("fixture", ["registry_auth", "registry_tls_auth"])
def test_basic_auth_is_really_required(fixture: str, request: pytest.FixtureRequest) -> None:
    reg: Registry = request.getfixturevalue(fixture)
    assert reg.credentials is not None
    user, password = reg.credentials
    assert _get(f"{reg.url}/v2/", verify=reg.verify).status_code == 401
    assert _get(f"{reg.url}/v2/", verify=reg.verify, auth=(user, password + "x")).status_code == 401
    assert _get(f"{reg.url}/v2/", verify=reg.verify, auth=(user, password)).status_code == 200
    with open(os.path.join(reg.state_dir, "htpasswd"), encoding="ascii") as handle:
        assert handle.read().startswith(f"{user}:$2y$"), "htpasswd entries must be bcrypt"


@pytest.mark.parametrize("fixture", ["registry_tls", "registry_tls_auth"])
def test_tls_is_verified_against_the_throwaway_ca_only(fixture: str, request: pytest.FixtureRequest) -> None:
    reg: Registry = request.getfixturevalue(fixture)
    assert reg.url.startswith("https://127.0.0.1:")
    with pytest.raises(requests.exceptions.SSLError):
        _get(f"{reg.url}/v2/", verify="/etc/ssl/certs/ca-certificates.crt")
    assert _get(f"{reg.url}/v2/", verify=reg.ca_file).status_code in (200, 401)
    # the certificate names localhost too
    assert _get(f"https://localhost:{reg.port}/v2/", verify=reg.ca_file).status_code in (200, 401)
    assert reg.ca_dir is not None
    assert os.listdir(reg.ca_dir) == ["ca.crt"], "tools taking a cert dir reject one that holds a key"


def test_stop_and_start_bring_back_the_same_instance(make_registry: Callable[..., Registry]) -> None:
    reg = make_registry("plain")
    port, blob = reg.port, b"survives a restart\n"
    with RegistryClient(reg.url) as client:
        assert client.upload_blob("berth-test/restart", sha256_digest(blob), blob)
    reg.stop()
    assert not reg.running
    with pytest.raises(requests.ConnectionError):
        _get(f"{reg.url}/v2/")
    reg.start()
    assert reg.port == port
    response = _get(f"{reg.url}/v2/berth-test/restart/blobs/{sha256_digest(blob)}")
    assert response.status_code == 200
    assert response.content == blob


def test_close_stops_the_process_and_removes_its_state() -> None:
    reg = Registry("auth", die_with_parent=True).start()
    pid, state_dir = reg.pid, reg.state_dir
    assert pid is not None
    assert os.path.isdir(state_dir)
    reg.close()
    assert procs.cmdline(pid) == []
    assert not os.path.exists(state_dir)


def test_context_manager_and_start_time() -> None:
    began = time.monotonic()
    with Registry("tls") as reg:
        assert reg.running
        elapsed = time.monotonic() - began
        assert reg.start_seconds is not None
        print(f"\nregistry (tls) start: {reg.start_seconds * 1000:.0f} ms to /v2/, {elapsed * 1000:.0f} ms with CA")
        assert reg.start_seconds < 5
    assert not reg.running


def test_deleting_manifests_is_enabled(
    registry: Registry, push_busybox: Callable[..., object], unique_repo: str
) -> None:
    result = push_busybox(registry, repo=unique_repo)
    with registry.client() as client:
        assert client.delete_manifest(unique_repo, result.digest).status_code == 202  # type: ignore[attr-defined]
        assert client.get_manifest(unique_repo, result.digest).status_code == 404  # type: ignore[attr-defined]


def test_a_pull_through_mirror_serves_private_upstream_content(
    registry_token: Registry,
    make_registry: Callable[..., Registry],
    push_busybox: Callable[..., object],
    unique_repo: str,
) -> None:
    pushed = push_busybox(registry_token, repo=unique_repo)
    mirror = make_registry("plain", mirror_of=registry_token)
    with RegistryClient(mirror.url) as anonymous:
        response = anonymous.get_manifest(unique_repo, "latest")
        assert response.status_code == 200
        assert sha256_digest(response.content) == pushed.digest  # type: ignore[attr-defined]
        layer = pushed.layers[0]  # type: ignore[attr-defined]
        assert sha256_digest(anonymous.get_blob(unique_repo, layer.digest).content) == layer.digest
    with RegistryClient(registry_token.url) as anonymous_upstream:
        assert anonymous_upstream.get_manifest(unique_repo, "latest").status_code == 401


def test_a_mirror_of_a_basic_auth_registry_is_refused_with_the_reason(registry_auth: Registry) -> None:
    with pytest.raises(ValueError, match="Basic-auth upstream"):
        Registry("plain", mirror_of=registry_auth)


def test_unknown_variant_and_missing_token_server_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown registry variant"):
        Registry("ftp")
    with pytest.raises(ValueError, match="needs a token_server"):
        Registry("token")
