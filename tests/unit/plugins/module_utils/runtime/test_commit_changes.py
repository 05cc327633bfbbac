"""``commit --change``: Dockerfile instructions on an image's run configuration, with Docker's rules."""

from typing import Any, Dict, List

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime.commit_changes import (
    apply_changes,
    expand,
    instructions,
    split_words,
)
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument

NGINX: Dict[str, Any] = {
    "Env": ["PATH=/usr/sbin:/usr/bin", "NGINX_VERSION=1.25"],
    "Entrypoint": ["/docker-entrypoint.sh"],
    "Cmd": ["nginx", "-g", "daemon off;"],
    "ExposedPorts": {"80/tcp": {}},
    "Labels": {"maintainer": "nginx"},
    "WorkingDir": "/srv",
}


def changed(*changes: str, base: Any = None) -> Dict[str, Any]:
    return apply_changes(NGINX if base is None else base, changes)


@pytest.mark.parametrize(
    ("change", "cmd"),
    [
        ('CMD ["nginx","-g","daemon off;"]', ["nginx", "-g", "daemon off;"]),
        ("CMD nginx -g 'daemon off;'", ["/bin/sh", "-c", "nginx -g 'daemon off;'"]),
        ("cmd   echo  hi ", ["/bin/sh", "-c", "echo  hi"]),
        ("CMD [not json", ["/bin/sh", "-c", "[not json"]),
        ('CMD ["a", 1]', ["/bin/sh", "-c", '["a", 1]']),
        ("CMD []", []),
        ('CMD ["echo", "$HOME"]', ["echo", "$HOME"]),
    ],
)
def test_cmd_json_and_shell_forms(change: str, cmd: List[str]) -> None:
    result = changed(change)
    assert result["Cmd"] == cmd
    assert result["Entrypoint"] == NGINX["Entrypoint"]


def test_shell_form_uses_the_images_shell() -> None:
    assert changed("CMD Get-Date", base={"Shell": ["pwsh", "-Command"]})["Cmd"] == ["pwsh", "-Command", "Get-Date"]


def test_entrypoint_clears_the_inherited_cmd_unless_a_cmd_came_first() -> None:
    assert "Cmd" not in changed('ENTRYPOINT ["/run.sh"]')
    assert changed('ENTRYPOINT ["/run.sh"]')["Entrypoint"] == ["/run.sh"]
    both = changed('CMD ["--fast"]', "ENTRYPOINT /run.sh")
    assert (both["Entrypoint"], both["Cmd"]) == (["/bin/sh", "-c", "/run.sh"], ["--fast"])
    after = changed('ENTRYPOINT ["/run.sh"]', 'CMD ["--slow"]')
    assert (after["Entrypoint"], after["Cmd"]) == (["/run.sh"], ["--slow"])


def test_env_pairs_quotes_legacy_form_and_expansion() -> None:
    env = changed(
        "ENV A=1 B=\"two words\" C='$NGINX_VERSION' D=$NGINX_VERSION E=${NGINX_VERSION}-x",
        "ENV NGINX_VERSION 1.27 with spaces",
        'ENV F=${MISSING:-fallback} G=${NGINX_VERSION:+set} H=${MISSING:+set} I=a\\ b J="q\\"q"',
    )["Env"]
    assert env == [
        "PATH=/usr/sbin:/usr/bin",
        "NGINX_VERSION=1.27 with spaces",
        "A=1",
        "B=two words",
        "C=$NGINX_VERSION",
        "D=1.25",
        "E=1.25-x",
        "F=fallback",
        "G=set",
        "H=",
        "I=a b",
        'J=q"q',
    ]


def test_env_sees_variables_set_by_earlier_instructions() -> None:
    env = changed("ENV BASE=/opt", "ENV BIN=$BASE/bin")["Env"]
    assert env[-2:] == ["BASE=/opt", "BIN=/opt/bin"]


def test_labels_expose_user_workdir() -> None:
    result = changed(
        'LABEL version="1.0" "com.example.team"=web',
        "EXPOSE 443 53/udp 8000-8002/TCP",
        "USER www-data:www-data",
        "WORKDIR html",
        "WORKDIR ../app/./",
    )
    assert result["Labels"] == {"maintainer": "nginx", "version": "1.0", "com.example.team": "web"}
    assert result["ExposedPorts"] == {
        "80/tcp": {},
        "443/tcp": {},
        "53/udp": {},
        "8000/tcp": {},
        "8001/tcp": {},
        "8002/tcp": {},
    }
    assert result["User"] == "www-data:www-data"
    assert result["WorkingDir"] == "/srv/app"
    assert changed("WORKDIR /var/$NGINX_VERSION", base={"Env": ["NGINX_VERSION=x"]})["WorkingDir"] == "/var/x"


def test_one_change_may_hold_several_lines() -> None:
    assert instructions('# a comment\nENV A=1 \\\n  B=2\n\nCMD ["x"]\n') == [("ENV", "A=1  B=2"), ("CMD", '["x"]')]
    result = changed("ENV A=1 \\\n  B=2\nCMD x")
    assert result["Env"][-2:] == ["A=1", "B=2"]
    assert result["Cmd"] == ["/bin/sh", "-c", "x"]


def test_the_input_is_not_modified_and_an_empty_config_works() -> None:
    before = repr(NGINX)
    changed("ENV X=1", "LABEL a=b", "EXPOSE 1", 'CMD ["y"]')
    assert repr(NGINX) == before
    assert apply_changes(None, ["ENV X=1", "EXPOSE 9"]) == {"Env": ["X=1"], "ExposedPorts": {"9/tcp": {}}}
    assert apply_changes({"Cmd": ["a"]}, []) == {"Cmd": ["a"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("RUN apt-get update", "commit cannot apply 'RUN' in the change 'RUN apt-get update' (a Dockerfile"),
        ("COPY a /b", "only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR are supported"),
        ("FROBNICATE x", "(unknown)"),
        ("CMD", "CMD needs an argument"),
        ("ENV", "ENV needs an argument"),
        ("ENV A", "ENV needs a value"),
        ("ENV A=1 B", "cannot find '=' in 'B'"),
        ("ENV =1", "a name is missing before '='"),
        ('ENV A="open', 'unmatched "'),
        ("LABEL a='open", "unmatched '"),
        ("EXPOSE http", "a port is a number"),
        ("EXPOSE 0", "ports are 1-65535"),
        ("EXPOSE 90-80", "ports are 1-65535"),
        ("EXPOSE 80/icmp", "the protocol must be tcp, udp or sctp"),
        ("USER a b", "USER takes exactly one argument"),
        ("ENV A=${B", "unmatched '{'"),
        ("ENV A=${B#x}", "unsupported variable form"),
        ("   ", "holds no instruction"),
    ],
)
def test_errors_name_the_problem(change: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        changed(change)
    assert message in str(raised.value)


def test_words_and_expansion_helpers() -> None:
    assert split_words(' a  \'b c\'  "d \\" e" f\\ g ') == ["a", "'b c'", '"d \\" e"', "f\\ g"]
    assert expand("'$X'\"$X\"$X${X}\\$X$", {"X": "1"}) == "$X111$X$"
    assert expand('"a\\b"', {}) == "a\\b", "a backslash before another character stays in double quotes"
