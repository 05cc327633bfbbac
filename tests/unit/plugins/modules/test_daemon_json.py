"""daemon_json as Ansible runs it: check mode -> run -> check mode -> run, with diffs."""

import json
import os
import stat
from typing import Any, Dict, List, Tuple
from unittest import mock

import pytest
from ansible.module_utils import _internal as ansible_module_internals
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.berth.containers.plugins.modules import daemon_json


def run(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Tuple[Dict[str, Any], int]:
    # Each real module run is a process of its own: no warnings of earlier runs, and not the
    # controller's display (which modules use once any test imported controller code).
    ansible_warnings._global_warnings.clear()
    with (
        mock.patch.object(ansible_module_internals, "is_controller", False),
        patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": True}),
        pytest.raises(SystemExit) as exited,
    ):
        daemon_json.main()
    return json.loads(capsys.readouterr().out), int(exited.value.code or 0)


def ok(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
    result, code = run(capsys, args, check)
    assert code == 0, result
    return result


def failed(capsys: pytest.CaptureFixture, args: Dict[str, Any]) -> str:
    result, code = run(capsys, args)
    assert code == 1
    assert result["failed"] is True
    return result["msg"]


def warnings_of(result: Dict[str, Any]) -> List[str]:
    """Warning texts; ansible-core 2.19 returns them as structured summaries."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def read(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_rhythm_on_a_fresh_host(tmp_path, capsys) -> None:
    path = str(tmp_path / "docker" / "daemon.json")
    args = {"path": path, "config": {"registry-mirrors": ["https://mirror.example.com"]}}

    predicted = ok(capsys, args, check=True)
    assert predicted["changed"] is True
    assert predicted["diff"]["before"] == ""
    assert json.loads(predicted["diff"]["after"]) == {"registry-mirrors": ["https://mirror.example.com"]}
    assert not os.path.exists(path)

    applied = ok(capsys, args)
    assert applied["changed"] is True
    assert applied["changed_keys"] == ["registry-mirrors"]
    assert applied["config"] == {"registry-mirrors": ["https://mirror.example.com"]}
    assert read(path) == applied["config"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert applied["diff"] == predicted["diff"]

    again = ok(capsys, args, check=True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]
    assert ok(capsys, args)["changed"] is False


def test_keeps_foreign_keys_and_ignores_formatting(tmp_path, capsys) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"log-driver":"journald",\n\n   "registry-mirrors": ["https://mirror.example.com"],"debug":true}')
    before = path.read_bytes()
    args = {"path": str(path), "config": {"registry-mirrors": ["https://mirror.example.com"]}}
    assert ok(capsys, args, check=True)["changed"] is False
    result = ok(capsys, args)
    assert result["changed"] is False
    assert path.read_bytes() == before, "an unchanged configuration must not be rewritten"

    changed = ok(capsys, {"path": str(path), "config": {"registry-mirrors": ["https://other.example.com"]}})
    assert changed["changed"] is True
    assert read(str(path)) == {
        "log-driver": "journald",
        "debug": True,
        "registry-mirrors": ["https://other.example.com"],
    }
    assert '-    "https://mirror.example.com"' not in changed["diff"]["after"]
    assert "https://mirror.example.com" in changed["diff"]["before"]


def test_dropped_managed_key_is_removed_but_hand_made_keys_stay(tmp_path, capsys) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true}')
    first = {"path": str(path), "config": {"live-restore": True, "registry-mirrors": ["https://m.example.com"]}}
    assert ok(capsys, first)["changed"] is True
    assert json.loads((tmp_path / ".daemon.json.managed-keys").read_text())["keys"] == [
        "live-restore",
        "registry-mirrors",
    ]

    second = {"path": str(path), "config": {"registry-mirrors": ["https://m.example.com"]}}
    predicted = ok(capsys, second, check=True)
    assert predicted["changed"] is True
    assert predicted["removed_keys"] == ["live-restore"]
    applied = ok(capsys, second)
    assert applied["removed_keys"] == ["live-restore"]
    assert read(str(path)) == {"debug": True, "registry-mirrors": ["https://m.example.com"]}
    assert ok(capsys, second, check=True)["changed"] is False


def test_absent_and_purge(tmp_path, capsys) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true, "log-level": "warn", "live-restore": true}')
    absent = {"path": str(path), "absent": ["debug"]}
    assert ok(capsys, absent, check=True)["changed"] is True
    assert ok(capsys, absent)["removed_keys"] == ["debug"]
    assert ok(capsys, absent)["changed"] is False

    purge = {"path": str(path), "config": {"log-level": "warn"}, "purge": True}
    predicted = ok(capsys, purge, check=True)
    assert predicted["changed"] is True
    assert predicted["removed_keys"] == ["live-restore"]
    assert ok(capsys, purge)["config"] == {"log-level": "warn"}
    assert read(str(path)) == {"log-level": "warn"}
    assert ok(capsys, purge, check=True)["changed"] is False


def test_invalid_existing_json_is_an_error_and_left_untouched(tmp_path, capsys) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"registry-mirrors": ["https://m.example.com"],}')
    before = path.read_bytes()
    message = failed(capsys, {"path": str(path), "config": {"debug": True}})
    assert message.startswith(f"{path} is not valid JSON (")
    assert "fix or remove it (it was left untouched)" in message
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"registry-mirrors": "https://m.example.com"}, "'registry-mirrors' must be a list of strings, not the string"),
        ({"registry-mirrors": ["m.example.com"]}, "has no scheme: write it as https://m.example.com"),
        ({"log-opts": {"max-file": 3}}, "'max-file' must be a string"),
        ({"live-restore": "yes"}, "'live-restore' must be true or false, not the string 'yes'"),
        ({"data-root": "docker"}, "'data-root' must be an absolute path"),
    ],
)
def test_wrong_types_fail_before_anything_is_written(tmp_path, capsys, config: dict, message: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true}')
    assert message in failed(capsys, {"path": str(path), "config": config})
    assert read(str(path)) == {"debug": True}


def test_hosts_needs_the_unit_override(tmp_path, capsys) -> None:
    path = tmp_path / "daemon.json"
    args = {"path": str(path), "config": {"hosts": ["fd://", "tcp://127.0.0.1:2376"]}}
    message = failed(capsys, args)
    assert "'hosts' conflicts with the -H fd://" in message
    assert "allow_hosts_with_unit_override=true" in message
    assert not path.exists()
    assert ok(capsys, {**args, "allow_hosts_with_unit_override": True})["changed"] is True


def test_unknown_keys_warn_or_fail(tmp_path, capsys) -> None:
    path = tmp_path / "daemon.json"
    warned = ok(capsys, {"path": str(path), "config": {"registry-mirrorz": ["https://m"]}}, check=True)
    assert any("'registry-mirrorz' is not an option this module knows" in w for w in warnings_of(warned))
    message = failed(capsys, {"path": str(path), "config": {"registry-mirrorz": ["https://m"]}, "unknown_keys": "fail"})
    assert "['registry-mirrorz'] are not options this module knows" in message
    quiet = ok(
        capsys, {"path": str(path), "config": {"registry-mirrorz": ["https://m"]}, "unknown_keys": "ignore"}, True
    )
    assert not warnings_of(quiet)


def test_backup_keeps_the_old_file(tmp_path, capsys) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true}')
    result = ok(capsys, {"path": str(path), "config": {"debug": False}, "backup": True})
    assert result["changed"] is True
    assert read(result["backup_file"]) == {"debug": True}
    assert read(str(path)) == {"debug": False}


def test_existing_invalid_values_of_other_keys_warn(tmp_path, capsys) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"live-restore": "yes"}')
    result = ok(capsys, {"path": str(path), "config": {"debug": True}}, check=True)
    assert any("already holds an invalid value" in w and "live-restore" in w for w in warnings_of(result))


def test_symlinked_file_stays_a_symlink(tmp_path, capsys) -> None:
    real = tmp_path / "managed" / "daemon.json"
    real.parent.mkdir()
    real.write_text('{"debug": true}')
    link = tmp_path / "daemon.json"
    link.symlink_to(real)
    result = ok(capsys, {"path": str(link), "config": {"live-restore": True}})
    assert result["changed"] is True
    assert link.is_symlink()
    assert read(str(real)) == {"debug": True, "live-restore": True}
