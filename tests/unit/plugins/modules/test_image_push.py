"""image_push and image's source=load, run as Ansible runs them, against a small real registry and real stores."""

import json
from typing import Any, Dict, Iterator, Tuple

import pytest
from ansible.module_utils.testing import patch_module_args
from support.fake_registry import FakeRegistry
from support.small_images import add_to_fake, small_image

from ansible_collections.berth.containers.plugins.module_utils.runtime import config as runtime_config
from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images
from ansible_collections.berth.containers.plugins.modules import image as image_module
from ansible_collections.berth.containers.plugins.modules import image_push

FIRST = small_image({"etc/release": "one\n"})
SECOND = small_image({"etc/release": "two\n"})


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        add_to_fake(registry, "team/app", FIRST, "v1")
        add_to_fake(registry, "team/app", SECOND, "v2")
        yield registry


def make_config(path, name: str) -> str:
    config = path / f"{name}.json"
    config.write_text(json.dumps({"data-root": str(path / name), "exec-root": str(path / f"{name}-run")}))
    return str(config)


def run(module: Any, capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Tuple[Dict, int]:
    with (
        patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": True}),
        pytest.raises(SystemExit) as exited,
    ):
        module.main()
    return json.loads(capsys.readouterr().out), int(exited.value.code or 0)


def ok(module: Any, capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
    result, code = run(module, capsys, args, check)
    assert code == 0, result
    return result


def test_push_rhythm_changed_only_when_the_tag_digest_changes(fake: FakeRegistry, tmp_path, capsys) -> None:
    config = make_config(tmp_path, "store")
    store = Images(runtime_config.load(config))
    store.pull(f"{fake.host}/team/app:v1")
    store.pull(f"{fake.host}/team/app:v2")
    target = f"{fake.host}/pushed/app:live"
    args = {"name": f"{fake.host}/team/app:v1", "target": target, "config": config}

    predicted = ok(image_push, capsys, args, check=True)
    assert predicted["changed"] is True
    assert predicted["diff"] == {"before": {"digest": None}, "after": {"digest": FIRST.digest}}
    assert ("pushed/app", "live") not in fake.manifests

    pushed = ok(image_push, capsys, args)
    assert pushed["changed"] is True
    assert pushed["digest"] == FIRST.digest
    assert sorted(pushed["mounted"]) == sorted([FIRST.layer_digest, FIRST.id])
    assert fake.manifests[("pushed/app", "live")][0] == FIRST.manifest

    fake.requests.clear()
    again = ok(image_push, capsys, args, check=True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"] == {"digest": FIRST.digest}
    assert ok(image_push, capsys, args)["changed"] is False
    assert not [r for r in fake.requests if r.method in ("PUT", "POST", "PATCH")], "nothing is sent when unchanged"

    moved = {**args, "name": f"{fake.host}/team/app:v2"}
    predicted = ok(image_push, capsys, moved, check=True)
    assert predicted["diff"] == {"before": {"digest": FIRST.digest}, "after": {"digest": SECOND.digest}}
    assert ok(image_push, capsys, moved)["changed"] is True
    assert fake.manifests[("pushed/app", "live")][0] == SECOND.manifest

    docker = {**moved, "format": "docker"}
    converted = ok(image_push, capsys, docker, check=True)
    assert converted["changed"] is True
    assert converted["digest"] != SECOND.digest
    assert ok(image_push, capsys, docker)["digest"] == converted["digest"]
    assert ok(image_push, capsys, docker)["changed"] is False


def test_push_of_a_missing_image_fails_clearly(tmp_path, capsys) -> None:
    result, code = run(image_push, capsys, {"name": "nothing:here", "config": make_config(tmp_path, "empty")})
    assert code == 1
    assert result["msg"] == "no such image: nothing:here (pull it first)"


def test_source_load_rhythm(fake: FakeRegistry, tmp_path, capsys) -> None:
    source = Images(runtime_config.load(make_config(tmp_path, "source")))
    source.pull(f"{fake.host}/team/app:v1")
    archive = tmp_path / "app.tar"
    with open(archive, "wb") as out:
        source.save([f"{fake.host}/team/app:v1"], out)

    config = make_config(tmp_path, "target")
    args = {"name": "example.org/app:stable", "source": "load", "load_path": str(archive), "config": config}
    predicted = ok(image_module, capsys, args, check=True)
    assert predicted["changed"] is True
    assert predicted["diff"] == {
        "before": {"exists": False},
        "after": {"exists": True, "id": FIRST.id, "digest": FIRST.digest},
    }
    assert Images(runtime_config.load(config)).list() == []

    loaded = ok(image_module, capsys, args)
    assert loaded["changed"] is True
    assert loaded["image"]["Id"] == FIRST.id
    assert loaded["image"]["RepoTags"] == ["example.org/app:stable"]
    assert loaded["actions"] == [f"Loaded image example.org/app:stable from {archive}"]

    assert ok(image_module, capsys, args, check=True)["changed"] is False
    assert ok(image_module, capsys, args)["changed"] is False

    with open(archive, "wb") as out:
        source.pull(f"{fake.host}/team/app:v2")
        source.save([f"{fake.host}/team/app:v2"], out)
    predicted = ok(image_module, capsys, args, check=True)
    assert predicted["diff"]["after"]["id"] == SECOND.id
    assert ok(image_module, capsys, args)["changed"] is True
    assert ok(image_module, capsys, args)["changed"] is False


def test_source_load_needs_a_path_and_a_matching_image(fake: FakeRegistry, tmp_path, capsys) -> None:
    config = make_config(tmp_path, "target")
    result, code = run(image_module, capsys, {"name": "x", "source": "load", "config": config})
    assert code == 1
    assert "load_path" in result["msg"]

    source = Images(runtime_config.load(make_config(tmp_path, "source")))
    source.pull(f"{fake.host}/team/app:v1")
    source.pull(f"{fake.host}/team/app:v2")
    archive = tmp_path / "two.tar"
    with open(archive, "wb") as out:
        source.save([f"{fake.host}/team/app:v1", f"{fake.host}/team/app:v2"], out)
    args = {"name": "example.org/other:1", "source": "load", "load_path": str(archive), "config": config}
    result, code = run(image_module, capsys, args, check=True)
    assert code == 1
    assert "holds no image named example.org/other:1" in result["msg"]
    by_name = {**args, "name": f"{fake.host}/team/app:v2"}
    assert ok(image_module, capsys, by_name)["image"]["Id"] == SECOND.id
