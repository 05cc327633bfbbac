"""Credentials files, WWW-Authenticate parsing and the token handshake."""

import base64
import json
import os
from typing import Dict, List, Tuple

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import auth
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import (
    AuthenticationError,
    ConfigError,
    RegistryError,
)


def encoded(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def home(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return tmp_path


def write(path, data) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return str(path)


def test_docker_hub_key_and_host_port_keys(home) -> None:
    write(
        home / ".docker" / "config.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": encoded("hubuser", "hubpass")},
                "127.0.0.1:5001": {"auth": encoded("alice", "s3cret:with:colons")},
                "https://reg.example:5443/v2/": {"auth": encoded("bob", "pw")},
            }
        },
    )
    assert auth.load_credentials("docker.io", "library/nginx") == auth.Credentials("hubuser", "hubpass")
    assert auth.load_credentials("127.0.0.1:5001", "x") == auth.Credentials("alice", "s3cret:with:colons")
    assert auth.load_credentials("reg.example:5443", "a/b") == auth.Credentials("bob", "pw")
    assert auth.load_credentials("127.0.0.1:5002", "x") is None


def test_most_specific_key_wins(home) -> None:
    write(
        home / ".config" / "containers" / "auth.json",
        {
            "auths": {
                "quay.example": {"auth": encoded("host", "1")},
                "quay.example/team": {"auth": encoded("team", "2")},
                "quay.example/team/app": {"auth": encoded("app", "3")},
            }
        },
    )
    assert auth.load_credentials("quay.example", "team/app").username == "app"
    assert auth.load_credentials("quay.example", "team/other").username == "team"
    assert auth.load_credentials("quay.example", "solo").username == "host"
    assert auth.lookup_keys("Quay.Example", "team/app") == [
        "quay.example/team/app",
        "quay.example/team",
        "quay.example",
    ]


def test_files_are_searched_docker_first_then_podman(home, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = home / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    write(runtime / "containers" / "auth.json", {"auths": {"r.example": {"auth": encoded("podman", "p")}}})
    assert auth.load_credentials("r.example").username == "podman"
    write(home / ".docker" / "config.json", {"auths": {"r.example": {"auth": encoded("docker", "d")}}})
    assert auth.load_credentials("r.example").username == "docker"
    assert auth.auth_file_candidates()[1] == str(runtime / "containers" / "auth.json")


def test_explicit_file_is_the_only_one_read(home, tmp_path) -> None:
    write(home / ".docker" / "config.json", {"auths": {"r.example": {"auth": encoded("docker", "d")}}})
    other = write(tmp_path / "mine.json", {"auths": {"r.example": {"username": "u", "password": "p"}}})
    assert auth.load_credentials("r.example", auth_file=other) == auth.Credentials("u", "p")
    with pytest.raises(ConfigError, match="does not exist"):
        auth.load_credentials("r.example", auth_file=str(tmp_path / "absent.json"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"auths": []}', "'auths' must be an object"),
        ('{"auths": {"r.example": {"auth": "!!!"}}}', "not base64 of user:password"),
        ('{"auths": {"r.example": {"auth": "' + base64.b64encode(b"nocolon").decode() + '"}}}', "not base64"),
    ],
)
def test_broken_files_name_the_file_and_never_the_secret(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "auth.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        auth.load_credentials("r.example", auth_file=str(path))
    assert str(path) in str(caught.value)
    assert "nocolon" not in str(caught.value)


def test_save_and_remove_round_trip_keep_other_entries(home) -> None:
    path = write(home / ".docker" / "config.json", {"auths": {"other.example": {"auth": "x"}}, "credsStore": "none"})
    assert auth.save_credentials("docker.io", auth.Credentials("hub", "pw")) == path
    assert auth.save_credentials("127.0.0.1:5000", auth.Credentials("a", "b")) == path
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    assert saved["auths"]["https://index.docker.io/v1/"] == {"auth": encoded("hub", "pw")}
    assert saved["auths"]["127.0.0.1:5000"] == {"auth": encoded("a", "b")}
    assert saved["credsStore"] == "none"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert auth.load_credentials("docker.io", "library/x") == auth.Credentials("hub", "pw")
    assert auth.remove_credentials("docker.io") is True
    assert auth.remove_credentials("docker.io") is False
    assert auth.load_credentials("docker.io", "library/x") is None
    with open(path, encoding="utf-8") as handle:
        assert "other.example" in json.load(handle)["auths"]


def test_password_is_not_in_repr() -> None:
    assert "hunter2" not in repr(auth.Credentials("alice", "hunter2"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:samalba/my-app:pull,push"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:samalba/my-app:pull,push",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        ('basic realm=simple , charset="UTF-8"', [("basic", {"realm": "simple", "charset": "UTF-8"})]),
        (
            'Basic realm="x", Bearer realm="https://t/token",service="s"',
            [("basic", {"realm": "x"}), ("bearer", {"realm": "https://t/token", "service": "s"})],
        ),
        (
            'Bearer realm="r",error="insufficient_scope",scope="repository:a:pull repository:b:pull"',
            [("bearer", {"realm": "r", "error": "insufficient_scope", "scope": "repository:a:pull repository:b:pull"})],
        ),
        (r'Newauth realm="a \"quoted\" realm", Basic', [("newauth", {"realm": 'a "quoted" realm'}), ("basic", {})]),
        ("Negotiate abc==, Basic realm=x", [("negotiate", {"": "abc=="}), ("basic", {"realm": "x"})]),
        ("", []),
    ],
)
def test_challenges_parse(header: str, expected: List[Tuple[str, Dict[str, str]]]) -> None:
    assert [(c.scheme, c.params) for c in auth.parse_challenges(header)] == expected


class TokenServer:
    """Stands in for the HTTP fetch the registry client does (the protocol is tested against real servers)."""

    def __init__(self, answers: List[Tuple[int, dict]]) -> None:
        self.answers = answers
        self.calls: List[Tuple[str, Dict[str, str]]] = []

    def __call__(self, url: str, headers: Dict[str, str]) -> Tuple[int, bytes]:
        self.calls.append((url, headers))
        status, document = self.answers.pop(0)
        return status, json.dumps(document).encode()


BEARER = 'Bearer realm="https://auth.example/token",service="reg",scope="repository:library/nginx:pull"'
SCOPE = "repository:library/nginx:pull"


def test_bearer_flow_fetches_caches_and_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    registry_auth = auth.RegistryAuth("registry.example", auth.Credentials("alice", "pw"), clock=lambda: now[0])
    server = TokenServer([(200, {"token": "t1", "expires_in": 300}), (200, {"access_token": "t2"})])
    assert registry_auth.header(SCOPE) is None
    assert registry_auth.unauthorized(BEARER, SCOPE, None, True, server) == "Bearer t1"
    url, headers = server.calls[0]
    assert url == "https://auth.example/token?service=reg&scope=repository%3Alibrary%2Fnginx%3Apull"
    assert headers["Authorization"] == "Basic " + encoded("alice", "pw")
    assert registry_auth.header(SCOPE) == "Bearer t1"
    now[0] += 289
    assert registry_auth.header(SCOPE) == "Bearer t1"
    now[0] += 2
    assert registry_auth.header(SCOPE) is None
    assert registry_auth.unauthorized(BEARER, SCOPE, None, True, server) == "Bearer t2"
    now[0] += 53
    assert registry_auth.header(SCOPE) == "Bearer t2", "expires_in defaults to 60 s (renewed 10% early)"
    now[0] += 2
    assert registry_auth.header(SCOPE) is None
    assert registry_auth.token_requests == 2


def test_anonymous_token_is_fetched_without_credentials() -> None:
    registry_auth = auth.RegistryAuth("registry.example", None)
    server = TokenServer([(200, {"token": "anon"})])
    assert registry_auth.unauthorized(BEARER, SCOPE, None, True, server) == "Bearer anon"
    assert "Authorization" not in server.calls[0][1]


def test_refused_token_after_a_fresh_one_is_denied_not_looped() -> None:
    registry_auth = auth.RegistryAuth("registry.example", auth.Credentials("alice", "pw"))
    server = TokenServer([(200, {"token": "t1"})])
    sent = registry_auth.unauthorized(BEARER, SCOPE, None, True, server)
    with pytest.raises(AuthenticationError, match="denied user alice"):
        registry_auth.unauthorized(BEARER, SCOPE, sent, False, server)
    anonymous = auth.RegistryAuth("registry.example", None)
    sent = anonymous.unauthorized(BEARER, SCOPE, None, True, TokenServer([(200, {"token": "a"})]))
    with pytest.raises(AuthenticationError) as caught:
        anonymous.unauthorized(BEARER, SCOPE, sent, False, server)
    assert "requires authentication: give username/password or run `berth login`" in str(caught.value)
    assert "repository library/nginx does not exist" in str(caught.value)


def test_insufficient_scope_fetches_a_token_with_the_wider_scope() -> None:
    registry_auth = auth.RegistryAuth("registry.example", auth.Credentials("alice", "pw"))
    server = TokenServer([(200, {"token": "narrow"}), (200, {"token": "wide"})])
    sent = registry_auth.unauthorized(BEARER, SCOPE, None, True, server)
    wider = (
        'Bearer realm="https://auth.example/token",service="reg",'
        'scope="repository:library/nginx:pull repository:library/other:pull",error="insufficient_scope"'
    )
    assert registry_auth.unauthorized(wider, SCOPE, sent, False, server) == "Bearer wide"
    assert "scope=repository%3Alibrary%2Fother%3Apull" in server.calls[1][0]


@pytest.mark.parametrize(
    ("credentials", "status", "message"),
    [
        (auth.Credentials("alice", "wrong"), 401, "registry registry.example refused the credentials for user alice"),
        (None, 401, "requires authentication"),
        (None, 500, "answered HTTP 500"),
    ],
)
def test_token_server_errors(credentials, status: int, message: str) -> None:
    registry_auth = auth.RegistryAuth("registry.example", credentials)
    with pytest.raises(RegistryError, match=message) as caught:
        registry_auth.unauthorized(BEARER, SCOPE, None, True, TokenServer([(status, {})]))
    assert "wrong" not in str(caught.value)


def test_token_answer_without_token_is_an_error() -> None:
    registry_auth = auth.RegistryAuth("registry.example", None)
    with pytest.raises(RegistryError, match="sent no token"):
        registry_auth.unauthorized(BEARER, SCOPE, None, True, TokenServer([(200, {"nothing": 1})]))


def test_basic_challenge_uses_credentials_once_then_refuses() -> None:
    registry_auth = auth.RegistryAuth("127.0.0.1:5001", auth.Credentials("alice", "pw"))
    header = registry_auth.unauthorized('Basic realm="r"', SCOPE, None, True, TokenServer([]))
    assert header == "Basic " + encoded("alice", "pw")
    assert registry_auth.header(SCOPE) == header, "Basic is sent up front once the registry asked for it"
    with pytest.raises(AuthenticationError, match="refused the credentials for user alice"):
        registry_auth.unauthorized('Basic realm="r"', SCOPE, header, True, TokenServer([]))
    with pytest.raises(AuthenticationError, match="requires authentication"):
        auth.RegistryAuth("127.0.0.1:5001", None).unauthorized('Basic realm="r"', SCOPE, None, True, TokenServer([]))


def test_unusable_challenge_is_reported() -> None:
    with pytest.raises(AuthenticationError, match="without a usable challenge"):
        auth.RegistryAuth("r", None).unauthorized("Negotiate abc", SCOPE, None, True, TokenServer([]))
    with pytest.raises(AuthenticationError, match="invalid token server"):
        auth.RegistryAuth("r", None).unauthorized(
            'Bearer realm="file:///etc/passwd"', SCOPE, None, True, TokenServer([])
        )
