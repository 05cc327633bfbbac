"""container_exec without a running container: argument handling, check mode, and clear failures.

Running commands for real needs root and a started container: see
tests/integration/plugins/modules/test_container_exec.py.
"""

import json
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.berth.containers.plugins.modules import container_exec


def run(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Tuple[Dict[str, Any], int]:
    with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit) as exited:
        container_exec.main()
    return json.loads(capsys.readouterr().out), int(exited.value.code or 0)


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"data-root": str(tmp_path / "data")}))
    return str(path)


def test_check_mode_runs_nothing_and_says_so_even_for_a_missing_container(config, capsys) -> None:
    result, code = run(capsys, {"container": "web", "command": "touch '/tmp/a file'", "config": config}, check=True)
    assert code == 0
    assert result["changed"] is False
    assert result["skipped"] is True
    assert result["cmd"] == ["touch", "/tmp/a file"]
    assert result["msg"] == "Command would have run in container web (it is missing now) if not in check mode"
    assert "rc" not in result


def test_a_missing_container_fails_a_real_run(config, capsys) -> None:
    result, code = run(capsys, {"name": "web", "argv": ["true"], "config": config})
    assert code == 1
    assert result["msg"] == "no such container: web"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"argv": ["true"], "command": "true"}, "mutually exclusive: argv|command"),
        ({}, "one of the following is required: argv, command"),
        ({"command": "   "}, "the command is empty"),
        ({"argv": []}, "the command is empty"),
        ({"command": "echo 'unbalanced"}, "cannot split command"),
    ],
)
def test_the_command_must_be_given_once_and_be_usable(config, capsys, args, message) -> None:
    result, code = run(capsys, {"container": "web", "config": config, **args})
    assert code == 1
    assert message in result["msg"]
