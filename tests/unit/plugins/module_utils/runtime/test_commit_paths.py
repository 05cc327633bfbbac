"""What the runtime created in a container's upper dir: resolved like the set-up does, found exactly.

Plain directories, files and symlinks only (no root needed); whiteouts and
opaque directories are covered by the integration tests of commit.
"""

import os
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime.commit_paths import (
    DIRECTORY,
    FILE,
    OverlayView,
    mount_points,
    runtime_entries,
)

DEFAULT_POINTS: List[Tuple[str, str]] = [
    ("/proc", DIRECTORY),
    ("/sys", DIRECTORY),
    ("/dev", DIRECTORY),
    ("/etc/hosts", FILE),
    ("/etc/hostname", FILE),
    ("/etc/resolv.conf", FILE),
]


def build(root: Path, tree: Dict[str, str]) -> Path:
    """*tree*: path -> "dir", "file:TEXT" or "link:TARGET" (parents made 0755)."""
    root.mkdir(parents=True, exist_ok=True)
    for relative, what in tree.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        kind, _sep, value = what.partition(":")
        if kind == "dir":
            path.mkdir(exist_ok=True)
        elif kind == "file":
            path.write_text(value)
        else:
            os.symlink(value, path)
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    return root


@pytest.fixture
def image(tmp_path: Path) -> List[str]:
    """Two layers, top-most first: resolv.conf is a dangling symlink into /run, /var/run points at /run."""
    bottom = build(
        tmp_path / "bottom",
        {
            "etc": "dir",
            "etc/passwd": "file:root",
            "etc/resolv.conf": "link:../run/systemd/resolve/stub.conf",
            "run": "dir",
            "var/run": "link:/run",
            "dev": "link:/somewhere",
            "srv": "dir",
        },
    )
    top = build(tmp_path / "top", {"etc/nginx": "dir", "etc/nginx/nginx.conf": "file:x"})
    return [str(top), str(bottom)]


def test_lookup_merges_layers_and_resolve_follows_symlinks_inside_the_root(image: List[str], tmp_path: Path) -> None:
    view = OverlayView(image)
    found = view.lookup(("etc",))
    assert found is not None
    assert found.is_dir
    assert found.stack == [f"{image[0]}/etc", f"{image[1]}/etc"]
    assert view.lookup(("etc", "nginx", "nginx.conf")) is not None
    assert view.lookup(("etc", "passwd", "x")) is None
    assert view.lookup(("nothing",)) is None
    assert view.resolve("/etc/resolv.conf") == ("run", "systemd", "resolve", "stub.conf")
    assert view.resolve("var/run/../etc/./hosts") == ("etc", "hosts"), "'..' after a symlink: the symlink's parent"
    assert view.resolve("/../../etc") == ("etc",), "'..' stops at the root"
    loop = build(tmp_path / "loop", {"a": "link:b", "b": "link:/a"})
    assert OverlayView([str(loop)]).resolve("/a/x") is None


def test_a_started_but_untouched_container_has_only_runtime_entries(image: List[str], tmp_path: Path) -> None:
    upper = build(
        tmp_path / "upper",
        {
            "etc": "dir",  # copied up to hold hosts and hostname
            "etc/hosts": "file:127.0.0.1 localhost",
            "etc/hostname": "file:web",
            "run/systemd/resolve/stub.conf": "file:nameserver 10.0.0.1",  # resolv.conf, through the symlink
            "proc": "dir",
            "sys": "dir",
            "dev": "dir",  # the image's /dev is a symlink: the runtime replaced it
            "data/vol": "dir",  # a volume whose parent the image lacks
            "srv/config.yml": "file:",  # a file bind-mounted into an existing directory
        },
    )
    points = [*DEFAULT_POINTS, ("/data/vol", DIRECTORY), ("/srv/config.yml", FILE)]
    assert runtime_entries(str(upper), image, points) == ["data", "dev", "etc", "proc", "run", "srv", "sys"]


def test_the_containers_own_changes_stay(image: List[str], tmp_path: Path) -> None:
    upper = build(
        tmp_path / "upper",
        {
            "etc/hosts": "file:127.0.0.1 localhost",
            "etc/nginx/conf.d/site.conf": "file:server {}",  # the user's change keeps etc/
            "run/systemd/resolve/stub.conf": "file:nameserver 10.0.0.1",
            "run/nginx.pid": "file:1",  # ... and run/
            "data/vol": "dir",
            "data/notes": "file:mine",  # ... and data/, which the runtime made for the volume
            "srv/config.yml": "file:",
        },
    )
    (upper / "srv").chmod(0o700)  # a copy-up whose mode changed is a change
    points = [*DEFAULT_POINTS, ("/data/vol", DIRECTORY), ("/srv/config.yml", FILE)]
    assert runtime_entries(str(upper), image, points) == [
        "data/vol",
        "etc/hosts",
        "run/systemd",
        "srv/config.yml",
    ]


def test_entries_the_image_has_or_of_another_kind_are_the_users(image: List[str], tmp_path: Path) -> None:
    upper = build(
        tmp_path / "upper",
        {
            "etc/passwd": "file:changed",  # the image has it: never a runtime entry
            "etc/hosts": "dir",  # not the kind the runtime makes there
            "proc": "file:odd",
        },
    )
    points = [*DEFAULT_POINTS, ("/etc/passwd", FILE)]
    assert runtime_entries(str(upper), image, points) == []


def test_an_empty_upper_dir_and_a_created_container(image: List[str], tmp_path: Path) -> None:
    upper = build(tmp_path / "upper", {})
    assert runtime_entries(str(upper), image, DEFAULT_POINTS) == []


def test_mount_points_of_a_container_record(tmp_path: Path) -> None:
    bind_file = tmp_path / "app.conf"
    bind_file.write_text("x")
    record = {
        "spec": {"tmpfs": {"/scratch": "size=1m"}},
        "effective": {"systemd": True},
        "volumes": [
            {"target": "/data/vol", "host_path": str(tmp_path), "type": "volume"},
            {"target": "/etc/app.conf", "host_path": str(bind_file), "type": "bind"},
            {"target": "/run/", "host_path": str(tmp_path), "type": "bind"},
        ],
    }
    points = mount_points(record)
    assert points[: len(DEFAULT_POINTS)] == DEFAULT_POINTS
    assert points[len(DEFAULT_POINTS) :] == [
        ("/data/vol", DIRECTORY),
        ("/etc/app.conf", FILE),
        ("/run/", DIRECTORY),
        ("/scratch", DIRECTORY),
        ("/run/lock", DIRECTORY),
        ("/tmp", DIRECTORY),
    ], "systemd's /run tmpfs is not made when a mount already takes /run"
    plain = {"spec": {"tmpfs": {}}, "effective": {"systemd": False}, "volumes": []}
    assert mount_points(plain) == DEFAULT_POINTS
