"""The container module as Ansible runs it, against the real runtime and registry, as root.

Every state change is played in the rhythm check mode -> run -> check mode ->
run, asserting ``changed``, the actions and the diff each time.
"""

import concurrent.futures
import json
import os
from typing import Any, Callable, Dict, Iterator, List

import pytest
from support.ansible_run import Task, run_tasks
from support.berth_env import BerthEnv
from support.registry import Registry

CONTAINER = "berth.containers.container"


@pytest.fixture
def env(mirror: Registry) -> Iterator[BerthEnv]:
    berth = BerthEnv(mirrors=[mirror.url], **{"unit-dir": ""})
    berth.settings["unit-dir"] = os.path.join(berth.base, "units")
    berth.write()
    berth.berth("pull", "busybox")
    yield berth
    assert berth.destroy() == []


def rhythm(env: BerthEnv, args: Dict[str, Any]) -> List[Dict[str, Any]]:
    task_args = {"config": env.config_path, **args}
    return run_tasks([Task(CONTAINER, task_args, check) for check in (True, False, True, False)])


def assert_rhythm(results: List[Dict[str, Any]], first_changes: bool = True) -> None:
    assert [result.get("failed", False) for result in results] == [False] * 4, results
    assert [result["changed"] for result in results] == [first_changes, first_changes, False, False]
    if first_changes:
        assert results[0]["actions"] == results[1]["actions"], "check mode must predict the run"


SLEEPER = {"name": "sleeper", "image": "busybox", "command": ["sleep", "300"]}


def test_create_then_no_op(env: BerthEnv) -> None:
    results = rhythm(env, SLEEPER)
    assert_rhythm(results)
    assert results[1]["actions"] == ["Created container sleeper", "Started container sleeper"]
    assert results[0]["diff"]["before"] == {"exists": False}
    assert results[1]["diff"]["after"]["status"] == "running"
    assert results[3]["actions"] == []
    assert results[3]["container"]["State"]["Running"] is True
    assert results[0]["container"] == {}, "check mode created nothing"


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"memory": "64m"}, "memory"),  # a value
        ({"command": ["sleep", "301"]}, "command"),  # a list
        ({"capabilities": ["NET_ADMIN", "SYS_TIME"]}, "cap_add"),  # a set
        ({"env": {"MODE": "blue"}}, "env"),  # a dict
        ({"published_ports": ["127.0.0.1::80"]}, "published_ports"),
        ({"userns": "200000"}, "userns"),  # a user namespace, spelled short
    ],
)
def test_one_changed_option_recreates(env: BerthEnv, change: Dict[str, Any], option: str) -> None:
    assert_rhythm(rhythm(env, SLEEPER))
    first_id = env.runtime().get("sleeper").id
    results = rhythm(env, {**SLEEPER, **change})
    assert_rhythm(results)
    assert results[0]["differences"] == [option]
    assert results[1]["actions"][0] == f"Recreated container sleeper: {option} differ"
    assert option in results[1]["diff"]["after"]
    assert results[1]["diff"]["before"][option] != results[1]["diff"]["after"][option]
    assert env.runtime().get("sleeper").id != first_id
    assert results[3]["container"]["State"]["Running"] is True


def test_order_and_units_do_not_matter(env: BerthEnv) -> None:
    first = {**SLEEPER, "env": {"A": "1", "B": "2"}, "capabilities": ["NET_ADMIN", "SYS_TIME"], "memory": "64m"}
    assert_rhythm(rhythm(env, first))
    same = {**SLEEPER, "env": {"B": "2", "A": "1"}, "capabilities": ["cap_sys_time", "net_admin"], "memory": "67108864"}
    assert_rhythm(rhythm(env, same), first_changes=False)


def test_image_env_spelled_out_is_no_change(env: BerthEnv) -> None:
    assert_rhythm(rhythm(env, SLEEPER))
    image_env = env.runtime().images.config_of(env.runtime().images.get("busybox"))["config"]["Env"]
    spelled = dict(entry.split("=", 1) for entry in image_env)
    assert_rhythm(rhythm(env, {**SLEEPER, "env": spelled}), first_changes=False)


def test_stopped_then_started(env: BerthEnv) -> None:
    assert_rhythm(rhythm(env, SLEEPER))
    results = rhythm(env, {**SLEEPER, "state": "stopped", "timeout": 0})
    assert_rhythm(results)
    assert results[1]["actions"] == ["Stopped container sleeper"]
    assert results[3]["container"]["State"]["Status"] == "exited"
    results = rhythm(env, SLEEPER)
    assert_rhythm(results)
    assert results[1]["actions"] == ["Started container sleeper"]


def test_absent(env: BerthEnv) -> None:
    assert_rhythm(rhythm(env, SLEEPER))
    results = rhythm(env, {"name": "sleeper", "state": "absent"})
    assert_rhythm(results)
    assert results[1]["actions"] == ["Removed container sleeper"]
    assert results[1]["diff"]["after"] == {"exists": False}
    assert env.runtime().find("sleeper") is None


def test_image_name_mismatch(env: BerthEnv, mirror: Registry) -> None:
    assert_rhythm(rhythm(env, SLEEPER))
    other_name = {**SLEEPER, "image": f"{mirror.host}/library/busybox:latest"}
    env.berth("pull", other_name["image"])  # the other name is local too: only the container can change
    ignored = rhythm(env, {**other_name, "image_name_mismatch": "ignore"})
    assert_rhythm(ignored, first_changes=False)
    results = rhythm(env, other_name)
    assert_rhythm(results)
    assert results[0]["differences"] == ["image_name"]


def test_image_updated_behind_the_tag(
    env: BerthEnv, mirror: Registry, push_image: Callable, busybox_layout: Any, nginx_layout: Any, unique_repo: str
) -> None:
    push_image(mirror, busybox_layout, repo=unique_repo, push_tag="moving")
    task = {**SLEEPER, "image": f"{mirror.host}/{unique_repo}:moving", "pull": "always"}
    assert_rhythm(rhythm(env, task))
    first = env.runtime().get("sleeper").image_id
    push_image(mirror, nginx_layout, repo=unique_repo, push_tag="moving")
    results = rhythm(env, task)
    assert_rhythm(results)
    # nginx's config differs from busybox's: check mode read the new config from the registry too.
    assert results[0]["differences"][0] == "image"
    assert results[0]["differences"] == results[1]["differences"]
    assert results[1]["actions"][0] == f"Pulled image {mirror.host}/{unique_repo}:moving"
    assert results[1]["diff"]["before"]["image"] == first
    assert env.runtime().get("sleeper").image_id != first


def test_comparisons_ignore_and_allow_more_present(env: BerthEnv) -> None:
    assert_rhythm(rhythm(env, {**SLEEPER, "env": {"A": "1", "EXTRA": "2"}}))
    relaxed = {
        **SLEEPER,
        "env": {"A": "1"},
        "memory": "64m",
        "comparisons": {"env": "allow_more_present", "memory": "ignore"},
    }
    assert_rhythm(rhythm(env, relaxed), first_changes=False)


def test_restart_policy_unit_written_once(env: BerthEnv) -> None:
    unit = os.path.join(env.settings["unit-dir"], "berth-sleeper.service")
    results = rhythm(env, {**SLEEPER, "restart_policy": "unless-stopped"})
    assert_rhythm(results)
    assert "Wrote systemd unit" in " ".join(results[0]["actions"])
    assert any(action == f"Wrote systemd unit {unit}" for action in results[1]["actions"])
    with open(unit, encoding="utf-8") as handle:
        content = handle.read()
    assert "start --boot sleeper" in content
    assert os.path.islink(os.path.join(env.settings["unit-dir"], "multi-user.target.wants", "berth-sleeper.service"))
    written = os.stat(unit).st_mtime_ns
    assert_rhythm(rhythm(env, {**SLEEPER, "restart_policy": "unless-stopped"}), first_changes=False)
    assert os.stat(unit).st_mtime_ns == written
    assert_rhythm(rhythm(env, {"name": "sleeper", "state": "absent"}))
    assert not os.path.exists(unit)


def test_parallel_runs_end_with_one_container(env: BerthEnv) -> None:
    args = {"config": env.config_path, **SLEEPER}

    def one() -> Dict[str, Any]:
        return run_tasks([Task(CONTAINER, args)])[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: one(), range(8)))
    assert [result.get("failed", False) for result in results] == [False] * 8, [r.get("msg") for r in results]
    assert sum(result["changed"] for result in results) == 1
    assert len(env.container_ids()) == 1
    listing = env.berth("ps", "--format", "json", check=False)
    inspect = json.loads(env.berth("inspect", "sleeper").stdout)[0]
    assert inspect["State"]["Running"] is True, listing.stdout


def test_missing_image_and_bad_options_fail_clearly(env: BerthEnv) -> None:
    results = run_tasks(
        [
            Task(CONTAINER, {"config": env.config_path, "name": "ghost"}),
            Task(CONTAINER, {"config": env.config_path, "name": "bad", "image": "busybox", "memory": "lots"}),
            Task(
                CONTAINER,
                {"config": env.config_path, "name": "bad", "image": "busybox", "comparisons": {"colour": "strict"}},
            ),
        ]
    )
    assert [result.get("failed") for result in results] == [True, True, True]
    assert "give an image to create it" in results[0]["msg"]
    assert "memory: 'lots' is not a size" in results[1]["msg"]
    assert "unknown option 'colour'" in results[2]["msg"]
    assert env.container_ids() == []
