"""The image modules as Ansible runs them: ansible-playbook on localhost against the real registry.

Every state change is played in the rhythm check mode -> run -> check mode ->
run, asserting ``changed`` and the diff each time.  The registry is reached
through ``support.faults.FaultProxy`` (with no fault rules) only to log the
requests, so a test can say exactly what was downloaded and when: check mode
must never fetch a blob.  Each test has its own Berth configuration (own data
root), passed with the ``config`` option or the ``BERTH_CONFIG`` environment.
"""

import json
import os
import uuid
from typing import Any, Callable, Dict, Iterator, List

import pytest
from support import images, pusher
from support.ansible_run import Task, run_tasks, run_tasks_with_output
from support.berth_env import BerthEnv
from support.faults import FaultProxy
from support.registry import Registry

from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images

IMAGE = "berth.containers.image"
INFO = "berth.containers.image_info"


@pytest.fixture
def env() -> Iterator[BerthEnv]:
    berth = BerthEnv()
    yield berth
    assert berth.destroy() == []


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.url) as logged:
        yield logged


@pytest.fixture
def repo(registry: Registry, busybox_layout: images.FixtureImages) -> Dict[str, Any]:
    """A repository of its own holding busybox ``latest`` as ``v1``; ``move()`` pushes another image to ``v1``."""
    name = f"berth-test/{uuid.uuid4().hex[:10]}"
    client = registry.client()
    first = pusher.push(client, name, busybox_layout.get("latest"), "v1")
    other = busybox_layout.get(images.platform_tag(str(images.Platform.host())))

    def move() -> pusher.PushResult:
        return pusher.push(client, name, other, "v1")

    yield {"name": name, "first": first, "move": move}
    client.close()


def marker(proxy: FaultProxy, label: str) -> Task:
    """A task that leaves ``/marker/<label>`` in the proxy's request log, to tell which task asked for what."""
    return Task("ansible.builtin.uri", {"url": f"{proxy.url}/marker/{label}", "status_code": [200, 404]})


def blob_downloads(proxy: FaultProxy, after: str = "", before: str = "") -> List[str]:
    """Blob GETs the proxy saw, optionally between two markers."""
    paths = [r.path for r in proxy.requests if r.method == "GET"]
    start = paths.index(f"/marker/{after}") if after else 0
    end = paths.index(f"/marker/{before}") if before else len(paths)
    return [path for path in paths[start:end] if "/blobs/" in path]


def store_blobs(env: BerthEnv) -> Task:
    return Task("ansible.builtin.find", {"paths": os.path.join(env.settings["data-root"], "blobs", "sha256")})


@pytest.mark.slow
def test_pull_rhythm_then_tag_moved_in_the_registry(env: BerthEnv, proxy: FaultProxy, repo: Dict[str, Any]) -> None:
    name = f"{proxy.host}/{repo['name']}"
    args = {"name": name, "tag": "v1", "pull": "always", "config": env.config_path}
    first = repo["first"]

    predicted, _marker, stored, pulled, again, last, info = run_tasks(
        [
            Task(IMAGE, args, check=True),
            marker(proxy, "checked"),
            store_blobs(env),
            Task(IMAGE, args),
            Task(IMAGE, args, check=True),
            Task(IMAGE, args),
            Task(INFO, {"name": [f"{name}:v1"], "config": env.config_path}),
        ]
    )
    assert predicted["changed"] is True, predicted
    assert predicted["image"] == {}
    assert predicted["diff"] == {
        "before": {"exists": False},
        "after": {"exists": True, "id": first.image_id, "digest": first.digest},
    }
    assert blob_downloads(proxy, before="checked") == [], "check mode reads manifests only"
    assert stored["matched"] == 0, stored
    assert pulled["changed"] is True, pulled
    assert pulled["image"]["Id"] == first.image_id
    assert pulled["image"]["RootFS"]["Layers"] == first.diff_ids
    assert pulled["diff"] == predicted["diff"]
    assert again["changed"] is False, again
    assert again["diff"]["before"] == again["diff"]["after"] == predicted["diff"]["after"]
    assert again["image"]["Id"] == first.image_id
    assert last["changed"] is False, last
    assert sorted(blob_downloads(proxy)) == sorted(
        f"/v2/{repo['name']}/blobs/{digest}" for digest in [*first.layer_digests, first.image_id]
    ), "each blob is downloaded once, by the real run"
    assert info["changed"] is False
    assert info["missing"] == []
    assert [image["Id"] for image in info["images"]] == [first.image_id]

    moved = repo["move"]()
    assert moved.image_id != first.image_id
    proxy.requests.clear()
    predicted, _marker, pulled, again, last = run_tasks(
        [
            Task(IMAGE, args, check=True),
            marker(proxy, "checked"),
            Task(IMAGE, args),
            Task(IMAGE, args, check=True),
            Task(IMAGE, args),
        ]
    )
    assert predicted["changed"] is True, predicted
    assert predicted["diff"] == {
        "before": {"exists": True, "id": first.image_id, "digest": first.digest},
        "after": {"exists": True, "id": moved.image_id, "digest": moved.digest},
    }
    assert predicted["image"] == {}
    assert blob_downloads(proxy, before="checked") == [], "check mode reads manifests only"
    assert pulled["changed"] is True, pulled
    assert pulled["diff"] == predicted["diff"]
    assert pulled["image"]["Id"] == moved.image_id
    assert again["changed"] is False, again
    assert last["changed"] is False, last
    new_layer = set(moved.layer_digests) - set(first.layer_digests)
    assert sorted(blob_downloads(proxy)) == sorted(
        f"/v2/{repo['name']}/blobs/{digest}" for digest in [*new_layer, moved.image_id]
    ), "only the new layer and the config are downloaded, once"


def test_absent_rhythm_with_berth_config_from_the_environment(
    env: BerthEnv, registry: Registry, repo: Dict[str, Any]
) -> None:
    name = f"{registry.host}/{repo['name']}:v1"
    environment = {"BERTH_CONFIG": env.config_path}
    first = repo["first"]
    (pulled,) = run_tasks([Task(IMAGE, {"name": name}, environment=environment)])
    assert pulled["changed"] is True, pulled

    absent = {"name": name, "state": "absent"}
    results = run_tasks([Task(IMAGE, absent, check, environment=environment) for check in (True, False, True, False)])
    predicted, removed, again, last = results
    before = {"exists": True, "id": first.image_id, "digest": first.digest}
    assert predicted["changed"] is True, predicted
    assert predicted["diff"] == {"before": before, "after": {"exists": False}}
    assert removed["changed"] is True, removed
    assert removed["actions"] == predicted["actions"]
    assert removed["actions"][-1] == f"Deleted: {first.image_id}"
    assert again["changed"] is False, again
    assert again["diff"] == {"before": {"exists": False}, "after": {"exists": False}}
    assert last["changed"] is False, last
    assert env.berth("images", "-q").stdout == ""
    assert env.berth("store", "verify").returncode == 0
    assert os.listdir(os.path.join(env.settings["data-root"], "blobs", "sha256")) == [], "GC took the blobs"


def test_absent_of_an_image_a_container_uses_is_refused_in_check_mode_too(
    env: BerthEnv, registry: Registry, repo: Dict[str, Any]
) -> None:
    name = f"{registry.host}/{repo['name']}:v1"
    run_tasks([Task(IMAGE, {"name": name, "config": env.config_path})])
    env.berth("create", "--name", f"user-{env.token}", name, "true")
    absent = {"name": name, "state": "absent", "config": env.config_path}
    predicted, refused, forced = run_tasks(
        [Task(IMAGE, absent, True), Task(IMAGE, absent), Task(IMAGE, {**absent, "force": True})]
    )
    for result in (predicted, refused):
        assert result.get("failed") is True, result
        assert f"used by container(s) user-{env.token}" in result["msg"]
    assert forced["changed"] is True, forced
    listed = env.berth("images").stdout.splitlines()
    assert len(listed) == 2, listed
    assert listed[1].split()[:3] == ["<none>", "<none>", repo["first"].image_id[7:19]], (
        "untagged, kept for the container"
    )
    assert env.berth("ps", "-a", "-q").stdout.strip() != ""


def test_wrong_password_is_a_clear_error_and_secrets_stay_out_of_the_output(
    env: BerthEnv, registry_auth: Registry, push_busybox: Callable[..., pusher.PushResult]
) -> None:
    push_busybox(registry_auth, repo="team/busybox")
    username, password = registry_auth.credentials
    wrong = "wrong-" + uuid.uuid4().hex
    base = {"name": f"{registry_auth.host}/team/busybox", "username": username, "config": env.config_path}
    tasks = [
        Task(IMAGE, {**base, "password": wrong}, check=True),
        Task(IMAGE, {**base, "password": wrong}),
        Task(IMAGE, {**base, "password": password}, check=True),
        Task(IMAGE, {**base, "password": password}),
    ]
    results, output = run_tasks_with_output(tasks, verbosity=3)
    for result in results[:2]:
        assert result.get("failed") is True, result
        assert f"refused the credentials for user {username}" in result["msg"]
        assert registry_auth.host in result["msg"]
    assert results[2]["changed"] is True
    assert results[3]["changed"] is True
    assert '"password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' in output, "-vvv prints the masked module args"
    assert wrong not in output
    assert password not in output
    assert wrong not in json.dumps(results)
    assert password not in json.dumps(results)


PUSH = "berth.containers.image_push"


def test_image_push_rhythm_and_source_load_rhythm(env: BerthEnv, registry: Registry, repo: Dict[str, Any]) -> None:
    """image_push: changed only when the tag's digest changes; image source=load: only when the id differs."""
    first = repo["first"]
    source = f"{registry.host}/{repo['name']}:v1"
    target = f"{registry.host}/{repo['name']}-copy:live"
    archive = os.path.join(env.base, "busybox.tar")
    pull = Task(IMAGE, {"name": source, "config": env.config_path})
    push = {"name": source, "target": target, "format": "docker", "config": env.config_path}
    pulled, predicted, pushed, again, last = run_tasks(
        [pull, *(Task(PUSH, push, check) for check in (True, False, True, False))]
    )
    with open(archive, "wb") as out:
        Images(env.config()).save([source], out)
    load_env = BerthEnv()
    load = {"name": "example.org/loaded:1", "source": "load", "load_path": archive, "config": load_env.config_path}
    try:
        load_predicted, loaded, load_again, load_last = run_tasks(
            [Task(IMAGE, load, check) for check in (True, False, True, False)]
        )
    finally:
        load_env.destroy()
    assert pulled["changed"] is True, pulled
    assert predicted["changed"] is True, predicted
    assert predicted["diff"]["before"] == {"digest": None}
    assert pushed["changed"] is True, pushed
    assert pushed["diff"] == predicted["diff"]
    assert pushed["digest"] == predicted["digest"] != first.digest, "converted to Docker's format"
    assert sorted(pushed["mounted"]) == sorted([*first.layer_digests, first.image_id])
    assert again["changed"] is False, again
    assert again["diff"]["before"] == again["diff"]["after"] == {"digest": pushed["digest"]}
    assert last["changed"] is False, last
    assert last["uploaded"] == last["mounted"] == []
    assert load_predicted["changed"] is True, load_predicted
    assert load_predicted["diff"]["after"]["id"] == first.image_id
    assert loaded["changed"] is True, loaded
    assert loaded["image"]["RepoTags"] == ["example.org/loaded:1"]
    assert load_again["changed"] is False, load_again
    assert load_last["changed"] is False, load_last
