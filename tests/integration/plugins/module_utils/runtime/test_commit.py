"""commit with real containers, a real registry and tools no one here wrote (root).

* The issue's example, through ``bin/berth``: nginx gets a page and loses its
  default site, ``commit -m -c`` makes ``mysite:v1``, ``history`` shows the
  layer with its comment and size, ``run --rm`` serves the page, ``push``
  sends it to the registry.  (The fixture's nginx is Debian's, whose default
  site is ``/etc/nginx/sites-enabled/default``, not ``conf.d/default.conf``.)
* A busybox container's deletions, an opaque directory, hard links (also
  across directories and to a copied-up lower file), xattrs (``user.*``,
  ``security.capability``) survive the commit, a push, ``rmi`` and a pull
  back: the same tree, the same behaviour.
* skopeo copies the pushed image to an OCI layout, umoci unpacks it: the same
  tree as berth's view of the image and of the container it was committed
  from (without what the runtime mounted there).
* What the runtime created for its mounts is not committed, and a running
  container is frozen exactly while its upper directory is read.
"""

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from typing import Any, Dict, Iterator, List

import pytest
from support.berth_env import BerthEnv
from support.registry import Registry
from support.trees import Snapshot, compare, overlay_snapshot, snapshot

from ansible_collections.berth.containers.plugins.module_utils.runtime import commit as commit_module
from ansible_collections.berth.containers.plugins.module_utils.runtime import layerdiff
from ansible_collections.berth.containers.plugins.module_utils.runtime.display import human_size
from ansible_collections.berth.containers.plugins.module_utils.runtime.images import RegistryOptions

CAP_NET_RAW = bytes.fromhex("01000002" + "00200000" + "00000000" * 3)
ID = re.compile(r"^sha256:[0-9a-f]{64}$")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_detached(host: BerthEnv, names: List[str], image: str, *args: str) -> str:
    name = unique("commit")
    names.append(name)
    host.berth("run", "-d", "--name", name, *args, image, *([] if image == "nginx" else ["sleep", "600"]))
    return name


def layer_names(host: BerthEnv, image: str) -> Dict[str, tarfile.TarInfo]:
    """The entries of an image's top layer blob, by name."""
    images = host.runtime().images
    record = images.get(image)
    with tarfile.open(images.store.blob_path(record.layers[-1]["digest"])) as tar:
        return {member.name: member for member in tar.getmembers()}


def image_view(host: BerthEnv, image: str) -> Snapshot:
    """What a container of *image* sees (its layers as one read-only overlay)."""
    images = host.runtime().images
    record = images.get(image)
    return overlay_snapshot([images.store.layer_diff(chain) for chain in reversed(record.chain_ids)])


def test_the_issue_example(host: BerthEnv, registry: Registry, container_names: List[str]) -> None:
    web = run_detached(host, container_names, "nginx")
    host.berth(
        "exec", web, "sh", "-c", "echo hello > /usr/share/nginx/html/index.html; rm /etc/nginx/sites-enabled/default"
    )
    tag = f"{unique('mysite')}:v1"
    image_id = host.berth("commit", "-m", "custom page", "-c", 'CMD ["nginx","-g","daemon off;"]', web, tag).stdout
    image_id = image_id.strip()
    assert ID.match(image_id), image_id

    runtime = host.runtime()
    record = runtime.images.get(tag)
    assert record.id == image_id
    nginx = runtime.images.get("nginx")
    assert record.chain_ids[:-1] == nginx.chain_ids, "the new layer sits on the image's chain"
    layer = runtime.store.layer(record.chain_ids[-1])
    history = host.berth("history", tag).stdout.splitlines()
    assert history[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    top = history[1]
    assert top.startswith(image_id[7:19])
    assert "nginx -g daemon off;" in top
    assert re.search(rf"\s{re.escape(human_size(layer.size))}\s+custom page$", top), top
    assert len(history) == len(host.berth("history", "nginx").stdout.splitlines()) + 1
    config = runtime.images.config_of(record)
    assert config["config"]["Cmd"] == ["nginx", "-g", "daemon off;"]

    entries = layer_names(host, tag)
    assert "usr/share/nginx/html/index.html" in entries
    assert "etc/nginx/sites-enabled/.wh.default" in entries
    assert "etc/hosts" not in entries, "the runtime's /etc/hosts mount point is not the container's change"
    assert not [name for name in entries if name.split("/")[0] in ("proc", "sys", "dev")]

    assert host.berth("run", "--rm", tag, "cat", "/usr/share/nginx/html/index.html").stdout == "hello\n"
    gone = host.berth("run", "--rm", tag, "test", "-e", "/etc/nginx/sites-enabled/default", check=False)
    assert gone.returncode == 1, "the deleted file stays deleted"

    target = f"{registry.host}/{unique('team')}/mysite:v1"
    pushed = host.berth("push", tag, target).stdout.splitlines()
    digest = pushed[-1].split("v1: digest: ", 1)[1]
    assert runtime.images.registry_tag_digest(target, RegistryOptions()) == digest == record.manifest
    assert f"{record.layers[-1]['digest'][7:19]}: Pushed" in pushed


# -- deletions, opaque directories, hard links, xattrs; round trips ------------------------------------------

CHANGES = " && ".join(
    [
        "rm /etc/motd",
        "rm -rf /opt/app && mkdir /opt/app && echo only > /opt/app/only",
        "mkdir /srv && echo data > /srv/a && ln /srv/a /srv/b && ln /srv/a /usr/share/berth/third-name",
        "ln /usr/share/berth/original /srv/original-link",
        "chown 1000:1000 /srv/a && chmod 4750 /srv/a",
    ]
)
PROBE = (
    "test -e /etc/motd; echo motd $?; ls -A /opt/app; "
    "[ /srv/a -ef /srv/b ] && [ /srv/a -ef /usr/share/berth/third-name ] && echo linked; "
    "[ /srv/original-link -ef /usr/share/berth/original ] && echo linked-lower; "
    "cat /srv/a; stat -c '%h %a %u:%g' /srv/a"
)
PROBE_OUTPUT = "motd 1\nonly\nlinked\nlinked-lower\ndata\n3 4750 1000:1000\n"


@pytest.fixture(scope="module")
def committed(host: BerthEnv) -> Iterator[Dict[str, Any]]:
    """A busybox container with every kind of change, committed; the container is stopped afterwards."""
    name = unique("changes")
    host.berth("run", "-d", "--name", name, "busybox", "sleep", "600")
    try:
        host.berth("exec", name, "sh", "-c", CHANGES)
        runtime = host.runtime()
        container = runtime.get(name)
        root = f"/proc/{container.state['pid']}/root"
        os.setxattr(f"{root}/srv/a", "user.note", b"kept")
        os.setxattr(f"{root}/srv/a", "security.capability", CAP_NET_RAW)
        os.setxattr(f"{root}/usr/share/berth/xattr", "user.berth", b"changed")  # copy-up of a lower file
        tag = f"{unique('changes')}:v1"
        image_id = host.berth("commit", "-a", "Jane <jane@example.com>", name, tag).stdout.strip()
        host.berth("stop", "-t", "1", name)
        yield {"name": name, "tag": tag, "id": image_id, "container": runtime.get(name)}
    finally:
        host.berth("rm", "-f", name, check=False)


def test_deletions_opaque_dirs_hard_links_and_xattrs_survive(host: BerthEnv, committed: Dict[str, Any]) -> None:
    tag = committed["tag"]
    assert host.berth("run", "--rm", tag, "sh", "-c", PROBE).stdout == PROBE_OUTPUT

    entries = layer_names(host, tag)
    assert entries["etc/.wh.motd"].isreg()
    assert entries["opt/app/.wh..wh..opq"].isreg()
    links = {name: member.linkname for name, member in entries.items() if member.islnk()}
    assert links == {
        "srv/b": "srv/a",
        "usr/share/berth/third-name": "srv/a",
        "usr/share/berth/original": "srv/original-link",
    }
    assert entries["srv/a"].pax_headers["SCHILY.xattr.user.note"] == "kept"

    view = image_view(host, tag)
    assert view["srv/a"]["xattrs"] == {"security.capability": CAP_NET_RAW.hex(), "user.note": b"kept".hex()}
    assert view["usr/share/berth/xattr"]["xattrs"] == {"user.berth": b"changed".hex()}
    assert view["srv/b"]["hardlink"] == view["usr/share/berth/third-name"]["hardlink"] == "srv/a"
    assert sorted(name for name in view if name.startswith("opt/app/")) == ["opt/app/only"]
    assert "etc/motd" not in view
    assert (view["srv/a"]["mode"], view["srv/a"]["uid"]) == ("0o4750", 1000)

    config = host.runtime().images.config_of(host.runtime().images.get(tag))
    assert config["author"] == "Jane <jane@example.com>"
    assert config["history"][-1]["author"] == "Jane <jane@example.com>"
    assert config["history"][-1]["created_by"] == "sleep 600"


@pytest.mark.slow
def test_pushed_removed_and_pulled_back_it_is_the_same_image(
    host: BerthEnv, registry: Registry, committed: Dict[str, Any], skopeo: str, umoci: str
) -> None:
    tag = committed["tag"]
    before = image_view(host, tag)
    target = f"{registry.host}/{unique('round')}/changes:v1"
    host.berth("push", tag, target)

    work = tempfile.mkdtemp(prefix="berth-commit-", dir="/var/tmp")
    try:
        layout = os.path.join(work, "layout")
        subprocess.run(
            [skopeo, "copy", "--quiet", "--src-tls-verify=false", f"docker://{target}", f"oci:{layout}:v1"],
            check=True,
            capture_output=True,
        )
        subprocess.run([umoci, "unpack", "--image", f"{layout}:v1", f"{work}/bundle"], check=True, capture_output=True)
        unpacked = snapshot(f"{work}/bundle/rootfs")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert compare(unpacked, before) == [], "umoci unpacks what berth shows"

    container = committed["container"]
    runtime = host.runtime()
    lowers = [runtime.store.layer_diff(chain) for chain in reversed(container.record["chain_ids"])]
    seen = overlay_snapshot([container.path("upper"), *lowers])
    runtime_paths = commit_module.plan_commit(runtime, container).excluded
    assert "etc/hosts" in runtime_paths
    container_view = {
        path: entry
        for path, entry in seen.items()
        if not any(path == excluded or path.startswith(excluded + "/") for excluded in runtime_paths)
    }
    assert compare(unpacked, container_view) == [], "the image is the container's view, less the runtime's mounts"

    removed = host.berth("rmi", tag).stdout
    assert f"Deleted: {committed['id']}" in removed
    assert host.runtime().images.find(tag) is None
    host.berth("pull", target)
    assert host.runtime().images.get(target).id == committed["id"]
    assert compare(image_view(host, target), before) == []
    assert host.berth("run", "--rm", target, "sh", "-c", PROBE).stdout == PROBE_OUTPUT
    assert host.runtime().store.verify(deep=True) == []


# -- the runtime's own entries; pausing -------------------------------------------------------------------


def test_runtime_mount_points_are_not_changes(host: BerthEnv, container_names: List[str]) -> None:
    bind_dir = tempfile.mkdtemp(prefix="berth-commit-bind-", dir="/var/tmp")
    try:
        bind_file = os.path.join(bind_dir, "app.conf")
        with open(bind_file, "w", encoding="utf-8") as handle:
            handle.write("setting=1\n")
        options = ["-v", "/data/vol", "--tmpfs", "/scratch", "-v", f"{bind_file}:/etc/app.conf:ro"]
        name = run_detached(host, container_names, "busybox", *options)
        host.berth("exec", name, "sh", "-c", "echo kept-out > /data/vol/notes; echo also-out > /scratch/x")
        runtime = host.runtime()
        container = runtime.get(name)
        upper_before = sorted(os.listdir(container.path("upper")))
        assert {"data", "etc", "scratch"} <= set(upper_before), upper_before

        untouched = commit_module.commit(runtime, container, f"{unique('same')}:v1")
        assert untouched.diff_id == layerdiff.EMPTY_LAYER_DIFF_ID, untouched.excluded
        assert untouched.image.chain_ids == container.record["chain_ids"], "no new layer"
        assert {"data", "scratch"} <= set(untouched.excluded)
        assert "etc/app.conf" in untouched.excluded or "etc" in untouched.excluded

        host.berth("exec", name, "sh", "-c", "echo mine > /etc/mine && mkdir -p /data/own && touch /data/own/file")
        changed = commit_module.commit(runtime, runtime.get(name), f"{unique('changed')}:v1")
        entries = layer_names(host, str(changed.reference))
        assert {"etc", "etc/mine", "data", "data/own", "data/own/file"} <= set(entries)
        assert not {"etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/app.conf", "data/vol", "scratch"} & set(
            entries
        ), sorted(entries)
    finally:
        shutil.rmtree(bind_dir, ignore_errors=True)


def freezer_state(container: Any) -> str:
    directory = container.observe()["cgroup"]["directories"]["freezer"]
    with open(os.path.join(directory, "freezer.state"), encoding="ascii") as handle:
        return handle.read().strip()


@pytest.mark.parametrize("pause", [True, False])
def test_a_running_container_is_frozen_exactly_while_it_is_read(
    host: BerthEnv, container_names: List[str], monkeypatch: pytest.MonkeyPatch, pause: bool
) -> None:
    name = run_detached(host, container_names, "busybox")
    host.berth("exec", name, "sh", "-c", "echo x > /x")
    runtime = host.runtime()
    container = runtime.get(name)
    seen: List[str] = []
    original = layerdiff.write_layer_tar  # what both the plan (hashing) and the commit (writing) read with

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(freezer_state(container))
        return original(*args, **kwargs)

    monkeypatch.setattr(layerdiff, "write_layer_tar", watched)
    plan = commit_module.plan_commit(runtime, container, pause=pause)
    done = commit_module.commit(runtime, container, pause=pause)
    expected = "FROZEN" if pause else "THAWED"
    assert seen == [expected, expected]
    assert freezer_state(container) == "THAWED"
    assert plan.diff_id == done.diff_id
    assert host.berth("exec", name, "cat", "/x").stdout == "x\n", "the container runs on"
    assert json.loads(host.berth("inspect", name).stdout)[0]["State"]["Status"] == "running"
