"""``berth login`` / ``logout`` against the real registry: Basic (htpasswd) and bearer tokens (a token server).

A login is checked with the registry before anything is stored; the stored
credentials are Docker's ``auths`` entry (``base64(user:password)``, file
mode 0600) and are what a later ``pull --authfile`` uses.
"""

import base64
import json
import os
import stat
from typing import Iterator

import pytest
from support.berth_env import BerthEnv
from support.registry import Registry
from support.tokenserver import TokenServer


@pytest.fixture
def env() -> Iterator[BerthEnv]:
    berth = BerthEnv()
    yield berth
    assert berth.destroy() == []


def login(env: BerthEnv, registry: Registry, user: str, password: str, authfile: str, check: bool = False):
    return env.berth(
        "login",
        "-u",
        user,
        "--password-stdin",
        "--authfile",
        authfile,
        registry.host,
        input=password + "\n",
        check=check,
    )


def test_login_is_checked_stored_used_by_pull_and_forgotten_by_logout(
    env: BerthEnv, registry_auth: Registry, push_busybox, tmp_path
) -> None:
    push_busybox(registry_auth, repo="private/busybox")
    user, password = registry_auth.credentials
    authfile = str(tmp_path / "auth.json")

    refused = login(env, registry_auth, user, password + "x", authfile)
    assert refused.returncode != 0
    assert f"refused the credentials for user {user}" in refused.stderr
    assert password not in refused.stderr
    assert not os.path.exists(authfile), "nothing is stored for a refused login"

    anonymous = env.berth("pull", "--authfile", authfile, f"{registry_auth.host}/private/busybox", check=False)
    assert anonymous.returncode != 0

    accepted = login(env, registry_auth, user, password, authfile, check=True)
    assert accepted.stdout == "Login Succeeded\n"
    with open(authfile, encoding="utf-8") as handle:
        stored = json.load(handle)
    assert base64.b64decode(stored["auths"][registry_auth.host]["auth"]).decode() == f"{user}:{password}"
    assert stat.S_IMODE(os.stat(authfile).st_mode) == 0o600

    env.berth("pull", "--authfile", authfile, f"{registry_auth.host}/private/busybox")

    assert env.berth("logout", "--authfile", authfile, registry_auth.host).returncode == 0
    with open(authfile, encoding="utf-8") as handle:
        assert registry_auth.host not in json.load(handle)["auths"]
    again = env.berth("logout", "--authfile", authfile, registry_auth.host, check=False)
    assert again.returncode != 0
    assert f"not logged in to {registry_auth.host}" in again.stderr


def test_login_through_a_token_server(env: BerthEnv, registry_token: Registry, token_server: TokenServer, tmp_path):
    authfile = str(tmp_path / "auth.json")
    token_server.clear_requests()
    accepted = login(env, registry_token, token_server.username, token_server.password, authfile, check=True)
    assert accepted.stdout == "Login Succeeded\n"
    assert [request.user for request in token_server.requests] == [token_server.username]
    refused = login(env, registry_token, token_server.username, "wrong", str(tmp_path / "other.json"))
    assert refused.returncode != 0
    assert f"refused the credentials for user {token_server.username}" in refused.stderr


def test_login_without_a_password_on_a_pipe_says_what_to_give(env: BerthEnv, registry_auth: Registry, tmp_path):
    result = env.berth(
        "login", "-u", "someone", "--authfile", str(tmp_path / "a.json"), registry_auth.host, input="", check=False
    )
    assert result.returncode != 0
    assert "give --username and --password-stdin" in result.stderr
