"""container_info against a real store: a container created (not started) from a small pulled image."""

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest
from ansible.module_utils.testing import patch_module_args
from support.fake_registry import FakeRegistry
from support.small_images import add_to_fake, small_image

from ansible_collections.berth.containers.plugins.module_utils.runtime import config as runtime_config
from ansible_collections.berth.containers.plugins.module_utils.runtime import spec as spec_module
from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime
from ansible_collections.berth.containers.plugins.modules import container_info

IMAGE = small_image({"etc/motd": "hello\n"})


@pytest.fixture
def created(tmp_path: Path) -> Iterator[Tuple[str, Any]]:
    """(config path, container) for a container named ``web`` in the ``created`` state."""
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": str(tmp_path / "data")}))
    with FakeRegistry() as fake:
        add_to_fake(fake, "app", IMAGE, "v1")
        runtime = Runtime(runtime_config.load(str(config)))
        runtime.images.pull(f"{fake.host}/app:v1")
        spec = spec_module.normalize({"image": f"{fake.host}/app:v1", "command": ["sleep", "1"], "env": {"A": "1"}})
        yield str(config), runtime.create(spec, name="web")


def run(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Tuple[Dict[str, Any], int]:
    with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit) as exited:
        container_info.main()
    return json.loads(capsys.readouterr().out), int(exited.value.code or 0)


def snapshot(root: Path) -> Dict[str, Tuple[int, int]]:
    return {str(path): (path.stat().st_mtime_ns, path.stat().st_size) for path in root.rglob("*") if path.is_file()}


def test_a_missing_container(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": str(tmp_path / "data")}))
    result, code = run(capsys, {"name": "nothing-here", "config": str(config), "logs": True})
    assert code == 0
    assert (result["changed"], result["exists"], result["state"], result["container"]) == (False, False, "absent", None)
    assert result["logs"] == []
    assert not (tmp_path / "data").exists(), "looking never creates the data root"


@pytest.mark.parametrize("check", [False, True])
def test_a_created_container_is_inspected_by_name_or_id_prefix(created, capsys, check) -> None:
    config, container = created
    for name in ("web", container.id[:12]):
        result, code = run(capsys, {"name": name, "config": config}, check=check)
        assert code == 0
        assert (result["changed"], result["exists"], result["state"]) == (False, True, "created")
        inspected = result["container"]
        assert (inspected["Id"], inspected["Name"]) == (container.id, "/web")
        assert (inspected["Path"], inspected["Args"]) == ("sleep", ["1"])
        assert "A=1" in inspected["Config"]["Env"]
        assert "logs" not in result


def test_logs_tail_both_streams_and_changes_nothing(created, capsys) -> None:
    config, container = created
    with open(container.log_path, "w", encoding="utf-8") as log:
        for number in range(5):
            stream = "stderr" if number % 2 else "stdout"
            log.write(json.dumps({"log": f"line {number}\n", "stream": stream, "time": f"t{number}"}) + "\n")
    data_root = Path(config).parent / "data"
    before = snapshot(data_root)
    result, code = run(capsys, {"name": "web", "config": config, "logs": True, "logs_tail": 3})
    assert code == 0
    assert result["logs"] == [
        {"stream": "stdout", "time": "t2", "text": "line 2"},
        {"stream": "stderr", "time": "t3", "text": "line 3"},
        {"stream": "stdout", "time": "t4", "text": "line 4"},
    ]
    every, every_code = run(capsys, {"name": "web", "config": config, "logs": True, "logs_tail": -1})
    assert every_code == 0
    assert [item["text"] for item in every["logs"]] == [f"line {n}" for n in range(5)]
    assert snapshot(data_root) == before


def test_a_negative_tail_other_than_minus_one_is_refused(created, capsys) -> None:
    config, _container = created
    result, code = run(capsys, {"name": "web", "config": config, "logs": True, "logs_tail": -2})
    assert code == 1
    assert "logs_tail must be -1" in result["msg"]


def test_an_ambiguous_id_prefix_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": str(tmp_path / "data")}))
    containers = tmp_path / "data" / "containers"
    for suffix in ("a", "b"):
        directory = containers / ("ab" + suffix * 62)
        directory.mkdir(parents=True)
        (directory / "config.json").write_text("{}")
    result, code = run(capsys, {"name": "ab", "config": str(config)})
    assert code == 1
    assert "ambiguous" in result["msg"]
    assert os.listdir(containers)
