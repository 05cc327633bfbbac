"""image_commit as Ansible runs it, on a real store: a container created from a small pulled image.

The container's upper directory is written directly (no root needed); the
module against running containers, through ansible-playbook, is in the
integration tests.
"""

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
from ansible_collections.berth.containers.plugins.modules import image_commit

IMAGE = small_image({"srv/index.html": "old\n"})


@pytest.fixture
def created(tmp_path: Path) -> Iterator[Tuple[str, Any]]:
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")}))
    with FakeRegistry() as fake:
        add_to_fake(fake, "app", IMAGE, "v1")
        runtime = Runtime(runtime_config.load(str(config)))
        runtime.images.pull(f"{fake.host}/app:v1")
        yield str(config), runtime.create(spec_module.normalize({"image": f"{fake.host}/app:v1"}), name="web")


def run(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Tuple[Dict[str, Any], int]:
    with (
        patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": True}),
        pytest.raises(SystemExit) as exited,
    ):
        image_commit.main()
    return json.loads(capsys.readouterr().out), int(exited.value.code or 0)


def ok(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
    result, code = run(capsys, args, check)
    assert code == 0, result
    return result


def images_in(config: str) -> int:
    return len(Runtime(runtime_config.load(config)).images.list())


def test_rhythm_changed_then_unchanged_then_changed_after_a_touch(created, capsys) -> None:
    config, container = created
    upper = Path(container.path("upper"))
    (upper / "srv").mkdir()
    (upper / "srv/index.html").write_text("hello\n")
    args = {
        "config": config,
        "container": "web",
        "name": "mysite",
        "tag": "v1",
        "comment": "custom page",
        "changes": ['CMD ["nginx", "-g", "daemon off;"]'],
    }

    predicted = ok(capsys, args, check=True)
    assert predicted["changed"] is True
    assert predicted["id"] is None
    assert predicted["image"] == {}
    assert predicted["tag"] == "docker.io/library/mysite:v1"
    assert predicted["empty_layer"] is False
    assert predicted["diff"] == {
        "before": {"exists": False, "id": None, "diff_id": None},
        "after": {"exists": True, "id": None, "diff_id": predicted["diff_id"]},
    }
    assert images_in(config) == 1, "check mode stores nothing"

    done = ok(capsys, args)
    assert done["changed"] is True
    assert done["diff_id"] == predicted["diff_id"], "check mode predicted the layer exactly"
    assert done["image"]["Id"] == done["id"]
    assert done["image"]["RepoTags"] == ["mysite:v1"]
    assert done["image"]["Config"]["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert done["image"]["RootFS"]["Layers"][-1] == done["diff_id"]
    assert done["diff"]["after"] == {"exists": True, "id": done["id"], "diff_id": done["diff_id"]}

    for check in (True, False):
        again = ok(capsys, args, check=check)
        assert again["changed"] is False, again
        assert again["id"] == done["id"]
        assert again["diff"]["before"] == again["diff"]["after"] == done["diff"]["after"]
    assert images_in(config) == 2

    os.utime(upper / "srv/index.html", (5, 5))
    touched = ok(capsys, args, check=True)
    assert touched["changed"] is True
    assert touched["diff"]["before"]["id"] == done["id"]
    assert touched["diff_id"] != done["diff_id"]
    moved = ok(capsys, args)
    assert moved["changed"] is True
    assert moved["id"] != done["id"]
    assert moved["diff_id"] == touched["diff_id"]
    assert ok(capsys, args)["changed"] is False


def test_other_options_make_another_image_and_name_may_carry_the_tag(created, capsys) -> None:
    config, _container = created
    base = {"config": config, "container": "web", "repository": "team/app:v1"}
    first = ok(capsys, base)
    assert first["changed"] is True
    assert first["empty_layer"] is True, "nothing changed in the container: no new layer"
    assert first["tag"] == "docker.io/team/app:v1"
    assert ok(capsys, base)["changed"] is False
    for option in ({"author": "Jane"}, {"changes": ["ENV A=1"]}, {"format": "docker"}, {"comment": "m"}):
        assert ok(capsys, {**base, **option}, check=True)["changed"] is True, option
    assert ok(capsys, {**base, "tag": "v1"})["changed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"container": "nothing", "name": "x"}, "no such container: nothing"),
        ({"container": "web", "name": "x:v1", "tag": "v2"}, "already names a tag other than v2"),
        ({"container": "web", "name": "x", "tag": "sha256:" + "0" * 64}, "not a digest"),
        ({"container": "web", "name": "x", "changes": ["RUN true"]}, "only CMD, ENTRYPOINT"),
    ],
)
def test_failures_are_clear(created, capsys, args: Dict[str, Any], message: str) -> None:
    config, _container = created
    result, code = run(capsys, {"config": config, **args})
    assert code == 1
    assert message in result["msg"]
    assert images_in(config) == 1
