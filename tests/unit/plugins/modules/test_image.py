"""The image module's logic, run as Ansible runs it, against a small real registry on loopback.

The registry is ``support.fake_registry`` (a real HTTP server; its request log
shows what was downloaded), the images are real one-layer images, and the
store is a real one under a temporary data root.  The full module runs
through ansible-playbook against the real registry are in
tests/integration/plugins/modules/test_image.py.
"""

import json
from typing import Any, Dict, Iterator, Tuple

import pytest
from ansible.module_utils.testing import patch_module_args
from support.fake_registry import FakeRegistry
from support.small_images import add_to_fake, blob_gets, small_image

from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument
from ansible_collections.berth.containers.plugins.modules import image as image_module

FIRST = small_image({"etc/release": "one\n"})
SECOND = small_image({"etc/release": "two\n"})


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        add_to_fake(registry, "team/app", FIRST, "v1")
        yield registry


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")}))
    return str(path)


def run(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Tuple[Dict[str, Any], int]:
    with (
        patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": True}),
        pytest.raises(SystemExit) as exited,
    ):
        image_module.main()
    return json.loads(capsys.readouterr().out), int(exited.value.code or 0)


def ok(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
    result, code = run(capsys, args, check)
    assert code == 0, result
    return result


def test_pull_rhythm_check_run_check_run(fake: FakeRegistry, config: str, capsys) -> None:
    args = {"name": f"{fake.host}/team/app", "tag": "v1", "config": config}

    predicted = ok(capsys, args, check=True)
    assert predicted["changed"] is True
    assert predicted["image"] == {}
    assert predicted["diff"] == {
        "before": {"exists": False},
        "after": {"exists": True, "id": FIRST.id, "digest": FIRST.digest},
    }
    assert blob_gets(fake) == [], "check mode must not download blobs"

    pulled = ok(capsys, args)
    assert pulled["changed"] is True
    assert pulled["image"]["Id"] == FIRST.id
    assert pulled["image"]["RepoTags"] == [f"{fake.host}/team/app:v1"]
    assert pulled["diff"]["after"] == predicted["diff"]["after"]
    assert pulled["actions"] == [f"Pulled image {fake.host}/team/app:v1"]

    requests_before = len(fake.requests)
    again = ok(capsys, args, check=True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"] == {"exists": True, "id": FIRST.id, "digest": FIRST.digest}
    assert again["image"]["Id"] == FIRST.id

    last = ok(capsys, args)
    assert last["changed"] is False
    assert len(fake.requests) == requests_before, "pull: missing must not ask the registry for a present image"


def test_pull_always_predicts_a_moved_tag_without_downloading(fake: FakeRegistry, config: str, capsys) -> None:
    args = {"name": f"{fake.host}/team/app:v1", "pull": "always", "config": config}
    ok(capsys, args)

    fake.requests.clear()
    unchanged = ok(capsys, args, check=True)
    assert unchanged["changed"] is False
    assert fake.count("GET", "/manifests/") == 0, "an unmoved tag is answered by a HEAD"
    assert fake.count("HEAD", "/manifests/v1") == 1

    add_to_fake(fake, "team/app", SECOND, "v1")
    fake.requests.clear()
    predicted = ok(capsys, args, check=True)
    assert predicted["changed"] is True
    assert predicted["diff"]["before"]["id"] == FIRST.id
    assert predicted["diff"]["after"] == {"exists": True, "id": SECOND.id, "digest": SECOND.digest}
    assert blob_gets(fake) == []

    pulled = ok(capsys, args)
    assert pulled["changed"] is True
    assert pulled["image"]["Id"] == SECOND.id
    assert sorted(blob_gets(fake)) == sorted(f"/v2/team/app/blobs/{d}" for d in (SECOND.layer_digest, SECOND.id))

    assert ok(capsys, args, check=True)["changed"] is False
    assert ok(capsys, args)["changed"] is False


def test_pull_always_of_an_unmoved_tag_reports_no_change(fake: FakeRegistry, config: str, capsys) -> None:
    args = {"name": f"{fake.host}/team/app:v1", "pull": "always", "config": config}
    ok(capsys, args)
    fake.requests.clear()
    result = ok(capsys, args)
    assert result["changed"] is False
    assert result["actions"] == [f"Checked {fake.host}/team/app:v1 in the registry: up to date"]
    assert blob_gets(fake) == []


def test_same_image_under_another_manifest_is_no_change(fake: FakeRegistry, config: str, capsys) -> None:
    """Check mode compares image ids when the manifest differs: a re-pushed identical config is no change."""
    args = {"name": f"{fake.host}/team/app:v1", "pull": "always", "config": config}
    ok(capsys, args)
    other_manifest = json.loads(FIRST.manifest)
    other_manifest["annotations"] = {"org.example.rebuilt": "yes"}
    body = json.dumps(other_manifest).encode()
    fake.add_manifest("team/app", body, other_manifest["mediaType"], ("v1",))
    predicted = ok(capsys, args, check=True)
    assert predicted["changed"] is False
    assert ok(capsys, args)["changed"] is False


def test_absent_rhythm(fake: FakeRegistry, config: str, capsys) -> None:
    name = f"{fake.host}/team/app:v1"
    ok(capsys, {"name": name, "config": config})
    args = {"name": name, "state": "absent", "config": config}

    predicted = ok(capsys, args, check=True)
    assert predicted["changed"] is True
    assert predicted["diff"] == {
        "before": {"exists": True, "id": FIRST.id, "digest": FIRST.digest},
        "after": {"exists": False},
    }
    assert predicted["actions"] == [
        f"Untagged: {name}",
        f"Untagged: {fake.host}/team/app@{FIRST.digest}",
        f"Deleted: {FIRST.id}",
    ]

    removed = ok(capsys, args)
    assert removed["changed"] is True
    assert removed["actions"] == predicted["actions"]

    assert ok(capsys, args, check=True)["changed"] is False
    assert ok(capsys, args)["changed"] is False
    assert ok(capsys, {"name": name, "config": config}, check=True)["changed"] is True


def test_absent_of_one_of_two_tags_only_untags(fake: FakeRegistry, config: str, capsys) -> None:
    add_to_fake(fake, "team/app", FIRST, "v1-copy")
    for tag in ("v1", "v1-copy"):
        ok(capsys, {"name": f"{fake.host}/team/app:{tag}", "config": config})
    args = {"name": f"{fake.host}/team/app:v1-copy", "state": "absent", "config": config}
    predicted = ok(capsys, args, check=True)
    assert predicted["actions"] == [f"Untagged: {fake.host}/team/app:v1-copy"]
    assert ok(capsys, args)["changed"] is True
    kept = ok(capsys, {"name": f"{fake.host}/team/app:v1", "config": config}, check=True)
    assert kept["changed"] is False
    assert kept["image"]["RepoTags"] == [f"{fake.host}/team/app:v1"]


def test_missing_image_fails_in_check_mode_as_in_a_run(fake: FakeRegistry, config: str, capsys) -> None:
    args = {"name": f"{fake.host}/team/app:nope", "config": config}
    for check in (True, False):
        result, code = run(capsys, args, check)
        assert code == 1
        assert "not found" in result["msg"]
        assert "team/app:nope" in result["msg"]


def test_wrong_password_is_a_clear_error_and_never_echoed(tmp_path, config: str, capsys) -> None:
    with FakeRegistry("basic", users={"deploy": "right-secret"}) as fake:
        add_to_fake(fake, "team/app", FIRST, "v1")
        args = {
            "name": f"{fake.host}/team/app:v1",
            "username": "deploy",
            "password": "wrong-secret-3141",
            "config": config,
        }
        for check in (True, False):
            result, code = run(capsys, args, check)
            assert code == 1
            assert "deploy" in result["msg"]
            assert fake.host in result["msg"]
            assert "wrong-secret-3141" not in json.dumps(result)
        result = ok(capsys, {**args, "password": "right-secret"})
        assert result["changed"] is True
        assert "right-secret" not in json.dumps(result)


def test_username_without_password_is_refused(config: str, capsys) -> None:
    result, code = run(capsys, {"name": "busybox", "username": "someone", "config": config})
    assert code == 1
    assert "password" in result["msg"]


@pytest.mark.parametrize(
    ("name", "tag", "expected"),
    [
        ("nginx", None, "nginx"),
        ("nginx", "1.25", "nginx:1.25"),
        ("localhost:5000/app", "v2", "localhost:5000/app:v2"),
        ("nginx", "sha256:" + "a" * 64, "nginx@sha256:" + "a" * 64),
        ("nginx:1.25", "1.25", "nginx:1.25"),
        ("nginx@sha256:" + "b" * 64, "sha256:" + "b" * 64, "nginx@sha256:" + "b" * 64),
    ],
)
def test_reference_text(name: str, tag: Any, expected: str) -> None:
    assert image_module.reference_text(name, tag) == expected


@pytest.mark.parametrize(
    ("name", "tag"),
    [("nginx:1.25", "1.24"), ("nginx@sha256:" + "b" * 64, "latest"), ("nginx:1", "sha256:" + "c" * 64)],
)
def test_reference_text_refuses_two_different_tags(name: str, tag: str) -> None:
    with pytest.raises(InvalidArgument, match="leave tag out"):
        image_module.reference_text(name, tag)
