"""Volume copy-up, as Docker does it: an empty volume takes the image's content at its mount point.

The image is busybox plus one layer whose ``/data`` holds every kind of
entry (owned by uid 1000, a hard link, symlinks, a FIFO, an xattr) and whose
config declares ``VOLUME /data /fresh /evil``, where ``/evil`` is a symlink
climbing out of the root: it must resolve inside the image (to the image's
own ``/etc``), never to the host's.
"""

import json
import os
import secrets
import stat
import subprocess
import uuid
from typing import Dict

import pytest
from support import oci
from support.berth_env import BerthEnv

from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images

HOST_ONLY = f"host-only-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def volume_image(host: BerthEnv, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tag of busybox + the /data layer, with VOLUME /data, /fresh and /evil in its config."""
    store_images = Images(host.config())
    base = store_images.find("busybox")
    assert base is not None
    tar = oci.tar_bytes(
        [
            oci.directory("data", mode=0o750, uid=1000, gid=1000),
            oci.file("data/hello", "hello\n", mode=0o640, uid=1000, gid=1000, xattrs={"user.berth": b"kept"}),
            oci.hardlink("data/hello-again", "data/hello", uid=1000, gid=1000),
            oci.directory("data/sub", mode=0o700, uid=1001, gid=1002),
            oci.file("data/sub/deep", "deep\n", mode=0o4755),
            oci.symlink("data/relative", "hello"),
            oci.symlink("data/absolute", "/etc/passwd"),
            oci.fifo("data/pipe", mode=0o620),
            oci.file("data/zz-big", b"b" * (256 << 10)),
            oci.symlink("evil", "../../../../../etc"),
        ]
    )
    blob = tmp_path_factory.mktemp("copyup") / "layer.tar.gz"
    blob.write_bytes(oci.compress(tar, "gzip"))
    config = json.loads(store_images.store.read_blob(base.id))
    config["config"]["Volumes"] = {"/data": {}, "/fresh": {}, "/evil": {}}
    config["rootfs"]["diff_ids"].append(oci.sha256_digest(tar))
    config["history"].append({"created_by": "copy-up test layer"})
    layers = [(layer["digest"], layer["diff_id"], layer["media_type"]) for layer in base.layers]
    layers.append((str(blob), oci.sha256_digest(tar), "application/vnd.oci.image.layer.v1.tar+gzip"))
    tag = f"example.org/copyup:{secrets.token_hex(4)}"
    store_images.record_local_image(json.dumps(config).encode(), layers, [tag])
    return tag


def volume_sources(host: BerthEnv, name: str) -> Dict[str, str]:
    """Mount destination -> host directory of a container's volumes (from ``berth inspect``)."""
    inspect = json.loads(host.berth("inspect", name).stdout)[0]
    return {mount["Destination"]: mount["Source"] for mount in inspect["Mounts"]}


def test_an_empty_anonymous_volume_takes_the_image_content_with_its_metadata(host: BerthEnv, volume_image) -> None:
    name = f"copyup-{secrets.token_hex(4)}"
    inside = host.berth(
        "run", "--name", name, "--network", "none", volume_image, "cat", "/data/hello", "/data/sub/deep"
    )
    try:
        assert inside.stdout == "hello\ndeep\n"
        data = volume_sources(host, name)["/data"]
        top = os.lstat(data)
        assert (top.st_uid, top.st_gid, stat.S_IMODE(top.st_mode)) == (1000, 1000, 0o750)
        hello = os.lstat(os.path.join(data, "hello"))
        assert (hello.st_uid, stat.S_IMODE(hello.st_mode)) == (1000, 0o640)
        assert os.getxattr(os.path.join(data, "hello"), "user.berth") == b"kept"
        assert os.lstat(os.path.join(data, "hello-again")).st_ino == hello.st_ino
        sub = os.lstat(os.path.join(data, "sub"))
        assert (sub.st_uid, sub.st_gid, stat.S_IMODE(sub.st_mode)) == (1001, 1002, 0o700)
        assert stat.S_IMODE(os.lstat(os.path.join(data, "sub", "deep")).st_mode) == 0o4755
        assert os.readlink(os.path.join(data, "relative")) == "hello"
        assert os.readlink(os.path.join(data, "absolute")) == "/etc/passwd"
        pipe = os.lstat(os.path.join(data, "pipe"))
        assert stat.S_ISFIFO(pipe.st_mode)
        assert stat.S_IMODE(pipe.st_mode) == 0o620
        assert os.lstat(os.path.join(data, "hello")).st_mtime == oci.FIXED_MTIME
    finally:
        host.berth("rm", "-f", "-v", name)


def test_a_volume_over_a_path_the_image_lacks_stays_empty(host: BerthEnv, volume_image) -> None:
    name = f"copyup-{secrets.token_hex(4)}"
    host.berth("run", "--name", name, "--network", "none", volume_image, "true")
    try:
        fresh = volume_sources(host, name)["/fresh"]
        assert os.listdir(fresh) == []
    finally:
        host.berth("rm", "-f", "-v", name)


def test_a_symlinked_mount_point_is_copied_from_inside_the_image_never_the_host(host: BerthEnv, volume_image) -> None:
    """``/evil -> ../../../../../etc``: the copy reads the image's /etc (busybox's), not the host's."""
    marker = f"/etc/{HOST_ONLY}"
    with open(marker, "w", encoding="ascii") as handle:
        handle.write("the host's own file\n")
    name = f"copyup-{secrets.token_hex(4)}"
    try:
        host.berth("run", "--name", name, "--network", "none", volume_image, "true")
        evil = volume_sources(host, name)["/evil"]
        copied = sorted(os.listdir(evil))
        assert "passwd" in copied
        assert HOST_ONLY not in copied
        with open(os.path.join(evil, "passwd"), encoding="utf-8") as handle:
            image_passwd = handle.read()
        with open("/etc/passwd", encoding="utf-8") as handle:
            assert image_passwd != handle.read()
    finally:
        os.unlink(marker)
        host.berth("rm", "-f", "-v", name)


def test_a_named_volume_with_content_is_never_overwritten(host: BerthEnv, volume_image) -> None:
    volume = f"copyup-{secrets.token_hex(4)}"
    host.berth(
        "run", "--rm", "--network", "none", "-v", f"{volume}:/mine", "busybox", "sh", "-c", "echo mine > /mine/own"
    )
    shown = host.berth("run", "--rm", "--network", "none", "-v", f"{volume}:/data", volume_image, "ls", "/data")
    assert shown.stdout.split() == ["own"]
    empty = f"copyup-{secrets.token_hex(4)}"
    filled = host.berth("run", "--rm", "--network", "none", "-v", f"{empty}:/data", volume_image, "cat", "/data/hello")
    assert filled.stdout == "hello\n"


def test_a_copy_that_fails_leaves_the_volume_empty_for_the_next_start(host: BerthEnv, volume_image) -> None:
    """The volume's filesystem fills up halfway (a 64 KiB tmpfs, and the image has 256 KiB in /data)."""
    volume = f"copyup-{secrets.token_hex(4)}"
    data = os.path.join(host.runtime().volumes, volume, "_data")
    os.makedirs(data)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "copyup-test", data], check=True)
    try:
        failed = host.berth(
            "run", "--rm", "--network", "none", "-v", f"{volume}:/data", volume_image, "true", check=False
        )
        assert failed.returncode != 0
        assert "cannot copy the image's /data into its empty volume" in failed.stderr
        assert os.listdir(data) == []
    finally:
        subprocess.run(["umount", data], check=True)
    filled = host.berth("run", "--rm", "--network", "none", "-v", f"{volume}:/data", volume_image, "cat", "/data/hello")
    assert filled.stdout == "hello\n"
    assert os.path.getsize(os.path.join(data, "zz-big")) == 256 << 10
