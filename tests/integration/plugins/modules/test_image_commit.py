"""image_commit as Ansible runs it (ansible-playbook, local connection), on running containers, as root.

The rhythm check mode -> run -> check mode -> run: a container with changes
makes an image once, then nothing while it is left untouched; touching a file
in it makes the next check predict a change and the next run make it.  Check
mode stores nothing, and the image the module makes runs.
"""

import os
from typing import Iterator

import pytest
from support.ansible_run import Task, run_tasks
from support.berth_containers import Containers
from support.berth_env import BerthEnv

COMMIT = "berth.containers.image_commit"


@pytest.fixture
def containers(host: BerthEnv) -> Iterator[Containers]:
    started = Containers(host)
    yield started
    assert started.remove_all() == []


def test_rhythm_then_a_touched_file_commits_again(host: BerthEnv, containers: Containers) -> None:
    name = containers.run("commit", "busybox", "sleep", "600")
    containers.exec(name, "sh", "-c", "mkdir /srv && echo hello > /srv/index.html && rm /etc/motd")
    tag = f"site-{os.urandom(4).hex()}:v1"
    args = {
        "config": host.config_path,
        "container": name,
        "name": tag,
        "comment": "custom page",
        "author": "Jane <jane@example.com>",
        "changes": ['CMD ["httpd", "-f", "-h", "/srv"]', "EXPOSE 80"],
    }
    blobs = os.path.join(host.settings["data-root"], "blobs", "sha256")
    stored = sorted(os.listdir(blobs))

    predicted, made, again, last = run_tasks([Task(COMMIT, args, check) for check in (True, False, True, False)])
    assert predicted["changed"] is True, predicted
    assert predicted["id"] is None
    assert predicted["diff"]["before"] == {"exists": False, "id": None, "diff_id": None}
    assert made["changed"] is True, made
    assert made["diff_id"] == predicted["diff_id"], "check mode predicted the layer exactly"
    assert made["diff"]["after"] == {"exists": True, "id": made["id"], "diff_id": made["diff_id"]}
    assert made["image"]["Config"]["Cmd"] == ["httpd", "-f", "-h", "/srv"]
    assert made["image"]["Author"] == "Jane <jane@example.com>"
    assert "etc/hosts" in made["runtime_paths"]
    for result in (again, last):
        assert result["changed"] is False, result
        assert result["id"] == made["id"]
        assert result["diff"]["before"] == result["diff"]["after"] == made["diff"]["after"]
    assert len(set(os.listdir(blobs)) - set(stored)) == 3, "one commit: a layer, a config, a manifest"

    assert host.berth("run", "--rm", tag, "cat", "/srv/index.html").stdout == "hello\n"
    history = host.berth("history", tag).stdout.splitlines()
    assert history[1].endswith("custom page")

    containers.exec(name, "touch", "/srv/index.html")
    touched, moved, settled = run_tasks([Task(COMMIT, args, check) for check in (True, False, True)])
    assert touched["changed"] is True, touched
    assert touched["diff"]["before"]["id"] == made["id"]
    assert touched["diff_id"] != made["diff_id"]
    assert moved["changed"] is True, moved
    assert moved["id"] != made["id"]
    assert moved["diff_id"] == touched["diff_id"]
    assert settled["changed"] is False, settled
    assert host.runtime().images.get(tag).id == moved["id"]
