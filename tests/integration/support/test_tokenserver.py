"""The token server: Docker Hub's bearer flow against a real registry that verifies the tokens."""

from typing import Callable, Dict, Optional

import pytest
import requests
from support.pki import CertificateAuthority
from support.pusher import ACCEPT_ALL, RegistryClient, RegistryClientError, parse_challenge, sha256_digest
from support.registry import Registry
from support.tokenserver import TokenServer, libtrust_key_id, parse_scope

pytestmark = pytest.mark.registry


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def _token(server: TokenServer, scope: str, auth: Optional[tuple] = None) -> requests.Response:
    with _session() as session:
        return session.get(
            server.realm, params={"service": server.service, "scope": scope}, auth=auth, verify=server.ca_file
        )


def _bearer(token: str) -> Dict[str, str]:
    # distribution 2.8 answers 404 for an OCI manifest unless the client accepts OCI types
    return {"Authorization": f"Bearer {token}", "Accept": ACCEPT_ALL}


@pytest.fixture
def pushed_private(registry_token: Registry, push_busybox: Callable[..., object], unique_repo: str) -> object:
    """busybox pushed to a private repository of the token registry."""
    return push_busybox(registry_token, repo=unique_repo)


def test_challenge_names_realm_service_and_scope(registry_token: Registry, token_server: TokenServer) -> None:
    with _session() as session:
        response = session.get(f"{registry_token.url}/v2/berth-test/x/manifests/latest")
    assert response.status_code == 401
    scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
    assert scheme == "bearer"
    assert params["realm"] == token_server.realm
    assert params["service"] == token_server.service
    assert params["scope"] == "repository:berth-test/x:pull"


def test_token_response_has_docker_hub_fields(token_server: TokenServer) -> None:
    response = _token(token_server, "repository:library/busybox:pull")
    assert response.status_code == 200
    body = response.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == token_server.expires_in
    assert body["issued_at"].endswith("Z")
    assert body["token"].count(".") == 2


def test_anonymous_pull_of_a_public_repository(
    registry_token: Registry, token_server: TokenServer, push_busybox: Callable[..., object]
) -> None:
    pushed = push_busybox(registry_token, repo="library/busybox")
    token_server.clear_requests()
    with RegistryClient(registry_token.url) as anonymous:
        response = anonymous.get_manifest("library/busybox", pushed.digest)  # type: ignore[attr-defined]
        assert response.status_code == 200
        assert sha256_digest(response.content) == pushed.digest  # type: ignore[attr-defined]
    [asked] = token_server.requests
    assert asked.scopes == ["repository:library/busybox:pull"]
    assert asked.user is None
    assert asked.granted == [{"type": "repository", "name": "library/busybox", "actions": ["pull"]}]


def test_private_repository_needs_the_right_user(
    registry_token: Registry, token_server: TokenServer, pushed_private: object, unique_repo: str
) -> None:
    digest = pushed_private.digest  # type: ignore[attr-defined]
    scope = f"repository:{unique_repo}:pull"
    anonymous = _token(token_server, scope).json()["token"]
    with _session() as session:
        url = f"{registry_token.url}/v2/{unique_repo}/manifests/{digest}"
        assert session.get(url, headers=_bearer(anonymous)).status_code == 401
        wrong = _token(token_server, scope, auth=(token_server.username, "wrong-password"))
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"].startswith("Basic ")
        good = _token(token_server, scope, auth=(token_server.username, token_server.password)).json()["token"]
        assert session.get(url, headers=_bearer(good)).status_code == 200
    with (
        RegistryClient(registry_token.url, token_server.username, "wrong-password") as client,
        pytest.raises(RegistryClientError, match="answered 401"),
    ):
        client.get_manifest(unique_repo, digest)


def test_anonymous_push_is_refused_with_insufficient_scope(registry_token: Registry) -> None:
    with RegistryClient(registry_token.url) as anonymous:
        response = anonymous.request("POST", "/v2/library/busybox/blobs/uploads/")
    assert response.status_code == 401
    params = parse_challenge(response.headers["WWW-Authenticate"])[1]
    assert params["error"] == "insufficient_scope"
    kind, name, actions = parse_scope(params["scope"])
    assert (kind, name, sorted(actions)) == ("repository", "library/busybox", ["pull", "push"])


def test_read_only_users_cannot_push(make_registry: Callable[..., Registry], test_ca: CertificateAuthority) -> None:
    with TokenServer(ca=test_ca, users={"reader": "r3ad"}, read_only=["reader"]) as server:
        reg = make_registry("token", token_server=server)
        with RegistryClient(reg.url, "reader", "r3ad") as reader:
            assert reader.request("POST", "/v2/berth-test/ro/blobs/uploads/").status_code == 401
        with RegistryClient(reg.url, server.username, server.password) as writer:
            assert writer.request("POST", "/v2/berth-test/ro/blobs/uploads/").status_code == 202
        assert [r.granted[0]["actions"] for r in server.requests if r.user == "reader"] == [["pull"]]


def test_requests_are_recorded_so_token_caching_can_be_asserted(
    registry_token: Registry, token_server: TokenServer, pushed_private: object, unique_repo: str
) -> None:
    token_server.clear_requests()
    with registry_token.client() as client:
        statuses = [client.get_manifest(unique_repo, "latest").status_code for attempt in range(3)]
        assert statuses == [200, 200, 200]
        assert client.token_fetches == 1
    [asked] = token_server.requests
    assert asked.method == "GET"
    assert asked.service == token_server.service
    assert asked.scopes == [f"repository:{unique_repo}:pull"]
    assert asked.user == token_server.username
    assert asked.status == 200


def test_a_service_other_than_ours_is_refused(token_server: TokenServer) -> None:
    with _session() as session:
        response = session.get(
            token_server.realm, params={"service": "registry.docker.io", "scope": "repository:a:pull"}
        )
    assert response.status_code == 400
    assert "unknown service" in response.json()["details"]


def test_oauth2_post_form_gives_a_usable_token(
    registry_token: Registry, token_server: TokenServer, pushed_private: object, unique_repo: str
) -> None:
    form = {
        "grant_type": "password",
        "username": token_server.username,
        "password": token_server.password,
        "service": token_server.service,
        "scope": f"repository:{unique_repo}:pull",
        "client_id": "berth-tests",
    }
    with _session() as session:
        body = session.post(token_server.realm, data=form).json()
        assert "token" not in body
        assert body["scope"] == form["scope"]
        response = session.get(
            f"{registry_token.url}/v2/{unique_repo}/manifests/latest", headers=_bearer(body["access_token"])
        )
        assert response.status_code == 200
        assert session.post(token_server.realm, data={**form, "password": "nope"}).status_code == 401


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
@pytest.mark.parametrize("key_id", ["x5c", "kid"])
def test_registry_accepts_both_key_styles_and_algorithms(
    key_type: str, key_id: str, make_registry: Callable[..., Registry], test_ca: CertificateAuthority
) -> None:
    with TokenServer(ca=test_ca, key_type=key_type, key_id=key_id) as server:
        reg = make_registry("token", token_server=server)
        token = _token(server, "repository:library/x:pull").json()["token"]
        with _session() as session:
            assert session.get(f"{reg.url}/v2/", headers=_bearer(token)).status_code == 200
            assert session.get(f"{reg.url}/v2/", headers=_bearer(token[:-4] + "AAAA")).status_code == 401
    assert server.signer.algorithm == ("ES256" if key_type == "ec" else "RS256")


@pytest.mark.parametrize(
    "forgery",
    ["foreign key", "expired", "other audience", "other issuer"],
)
def test_registry_really_verifies_tokens(
    forgery: str, registry_token: Registry, token_server: TokenServer, test_ca: CertificateAuthority
) -> None:
    access = token_server.grant(token_server.username, ["repository:library/busybox:pull"])
    if forgery == "foreign key":
        with TokenServer(ca=CertificateAuthority(f"{token_server.state_dir}/other-ca")) as stranger:
            token = stranger.issue(token_server.username, access)
    elif forgery == "expired":
        import time

        token = token_server.issue(token_server.username, access, expires_in=60, issued_at=time.time() - 3600)
    elif forgery == "other audience":
        token = token_server.issue(token_server.username, access, audience="registry.docker.io")
    else:
        token = token_server.issue(token_server.username, access, issuer="someone-else")
    genuine = token_server.issue(token_server.username, access)
    with _session() as session:
        url = f"{registry_token.url}/v2/"
        assert session.get(url, headers=_bearer(genuine)).status_code == 200
        assert session.get(url, headers=_bearer(token)).status_code == 401


def test_token_server_over_tls(make_registry: Callable[..., Registry], test_ca: CertificateAuthority) -> None:
    with TokenServer(ca=test_ca, tls=True) as server:
        assert server.realm.startswith("https://127.0.0.1:")
        reg = make_registry("tls-token", token_server=server)
        with pytest.raises(requests.exceptions.SSLError), _session() as session:
            session.get(server.realm, verify="/etc/ssl/certs/ca-certificates.crt")
        with RegistryClient(reg.url, verify=test_ca.cert) as anonymous:
            assert anonymous.ping().status_code == 200
            assert anonymous.token_fetches == 1


def test_scope_parsing_and_libtrust_key_id() -> None:
    assert parse_scope("repository:library/busybox:pull,push") == ("repository", "library/busybox", ["pull", "push"])
    assert parse_scope("repository:host:5000/x:pull") == ("repository", "host:5000/x", ["pull"])
    with pytest.raises(ValueError, match="malformed scope"):
        parse_scope("repository")
    key_id = libtrust_key_id(b"any DER bytes")
    groups = key_id.split(":")
    assert len(groups) == 12
    assert all(len(g) == 4 and g.isalnum() and g.upper() == g for g in groups)
