"""Layer application as root: overlay whiteouts, opaque dirs, implied parents, devices, owners, capabilities.

Needs root: whiteouts are ``mknod`` character devices, opaque markers are
``trusted.overlay.opaque`` xattrs, entries are owned by other ids, and the
stacked layers are mounted with overlayfs (in a private mount namespace,
through ``unshare -m``; see ``support.layertar.overlay``).
"""

import gzip
import hashlib
import io
import os
import stat
import tarfile
from typing import Dict

import pytest
import zstandard
from support.layertar import FIXED_MTIME, TarBuilder

from ansible_collections.berth.containers.plugins.module_utils.runtime import layers
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import LayerError

OPAQUE = "trusted.overlay.opaque"
# cap_net_raw+ep as written by setcap(8): VFS_CAP_REVISION_2, effective bit, permitted 1<<13.
CAP_NET_RAW = bytes.fromhex("01000002" + "00200000" + "00000000" + "00000000" + "00000000")


def apply(tar: TarBuilder, dest, parents=(), **kwargs) -> layers.LayerStats:
    os.makedirs(dest, exist_ok=True)
    return layers.apply_layer(tar.stream(), str(dest), [str(p) for p in parents], **kwargs)


def whiteout(path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def opaque(path) -> bool:
    try:
        return os.getxattr(path, OPAQUE) == b"y"
    except OSError:
        return False


def test_whiteouts_become_0_0_devices(tmp_path) -> None:
    stats = apply(TarBuilder().dir("etc").whiteout("etc/motd").file(".wh.gone", uid=5, gid=6), tmp_path)
    assert whiteout(tmp_path / "etc/motd")
    assert stat.S_IMODE(os.lstat(tmp_path / "etc/motd").st_mode) == 0
    assert (os.lstat(tmp_path / "gone").st_uid, os.lstat(tmp_path / "gone").st_gid) == (5, 6)
    assert not os.path.lexists(tmp_path / "etc/.wh.motd")
    assert stats.whiteouts == 2


def test_opaque_marker_after_the_children_keeps_them(tmp_path) -> None:
    """E16: the opaque marker hides lower children only, wherever it is in the tar."""
    stats = apply(TarBuilder().dir("a").dir("a/b").dir("a/b/c").file("a/b/c/foo", b"kept").opaque("a"), tmp_path)
    assert opaque(tmp_path / "a")
    assert (tmp_path / "a/b/c/foo").read_bytes() == b"kept"
    assert not os.path.lexists(tmp_path / "a/.wh..wh..opq")
    assert stats.opaque_dirs == 1


def test_whiteout_and_directory_of_the_same_name_make_an_opaque_directory(tmp_path) -> None:
    apply(TarBuilder().whiteout("d").dir("d").file("d/new", b"1").file("e/x", b"2").whiteout("e"), tmp_path)
    for name in ("d", "e"):
        assert os.path.isdir(tmp_path / name)
        assert opaque(tmp_path / name), f"{name} should hide the lower directory it replaces"
    assert (tmp_path / "d/new").read_bytes() == b"1"
    assert (tmp_path / "e/x").read_bytes() == b"2"


def test_whiteout_then_children_make_an_opaque_directory(tmp_path) -> None:
    stats = apply(TarBuilder().whiteout("d").file("d/x", b"1"), tmp_path)
    assert os.path.isdir(tmp_path / "d")
    assert opaque(tmp_path / "d")
    assert stats.whiteouts == 0


def test_whiteout_does_not_hide_a_file_of_its_own_layer(tmp_path) -> None:
    apply(TarBuilder().file("f", b"mine").whiteout("f").whiteout("g").file("g", b"also mine"), tmp_path)
    assert (tmp_path / "f").read_bytes() == b"mine"
    assert (tmp_path / "g").read_bytes() == b"also mine"


def test_whiteouts_below_an_opaque_directory_are_dropped(tmp_path) -> None:
    """The kernel would list them as ghost entries in readdir (measured on 6.18)."""
    stats = apply(TarBuilder().dir("a").whiteout("a/b/c").whiteout("a/x").opaque("a").whiteout("y"), tmp_path)
    assert sorted(os.listdir(tmp_path / "a")) == ["b"]
    assert os.listdir(tmp_path / "a/b") == []
    assert whiteout(tmp_path / "y")
    assert stats.whiteouts == 1
    assert stats.skipped_entries == 2


def test_legacy_aufs_metadata_is_skipped(tmp_path) -> None:
    stats = apply(TarBuilder().dir(".wh..wh.plnk").file(".wh..wh.plnk/1.2", b"x").file(".wh..wh.aufs"), tmp_path)
    assert os.listdir(tmp_path) == []
    assert stats.skipped_entries == 3


def test_implied_parents_inherit_from_the_parent_layers(tmp_path) -> None:
    """E17: like containerd's mkparent, top-most parent first."""
    lower = tmp_path / "lower"
    apply(
        TarBuilder()
        .dir(".", mode=0o711, uid=7, gid=7)
        .dir("usr", mode=0o750, uid=5, gid=6, xattrs={"user.origin": b"lower", "trusted.note": b"t"})
        .dir("usr/share", mode=0o700, uid=9, gid=9)
        .dir("opt", mode=0o700, uid=3, gid=3),
        lower,
    )
    middle = tmp_path / "middle"
    apply(TarBuilder().whiteout("usr/share").dir("opt", mode=0o701, uid=4, gid=4).opaque("opt"), middle, [lower])
    assert stat.S_IMODE(os.stat(middle / "usr").st_mode) == 0o750  # implied in the middle layer too
    top = tmp_path / "top"
    apply(
        TarBuilder().file("usr/share/doc/f", b"x").file("usr/local/bin/x", b"y").file("opt/a/b", b"z"),
        top,
        parents=[middle, lower],
    )
    usr = os.stat(top / "usr")
    assert (stat.S_IMODE(usr.st_mode), usr.st_uid, usr.st_gid) == (0o750, 5, 6)
    assert os.getxattr(top / "usr", "user.origin") == b"lower"
    assert os.getxattr(top / "usr", "trusted.note") == b"t"
    for fresh in ("usr/share", "usr/share/doc", "usr/local", "usr/local/bin", "opt/a"):
        st = os.stat(top / fresh)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0), fresh
    opt = os.stat(top / "opt")
    assert (stat.S_IMODE(opt.st_mode), opt.st_uid) == (0o701, 4)  # the middle layer's opt, not the lower one
    assert not opaque(top / "opt")  # overlay metadata of a parent is never copied
    root = os.stat(top)
    assert (stat.S_IMODE(root.st_mode), root.st_uid) == (0o711, 7)


def test_an_explicit_directory_entry_drops_xattrs_copied_from_the_parent(tmp_path) -> None:
    lower = tmp_path / "lower"
    apply(TarBuilder().dir("d", xattrs={"user.old": b"1"}), lower)
    top = tmp_path / "top"
    apply(TarBuilder().file("d/f").dir("d", mode=0o700, xattrs={"user.new": b"2"}), top, parents=[lower])
    assert sorted(os.listxattr(top / "d")) == ["user.new"]


def test_devices_fifos_setuid_capabilities_and_owners(tmp_path) -> None:
    tar = (
        TarBuilder()
        .char("dev/null", 1, 3, mode=0o666)
        .block("dev/sda", 8, 0, mode=0o660, gid=6)
        .char("dev/odd", 4095, 1048575, mode=0o4640)  # large numbers, setuid on a device node
        .fifo("run/initctl", mode=0o600, uid=0, gid=0)
        .file("bin/su", b"#!", mode=0o4755, uid=0, gid=0)
        .file("usr/bin/newgrp", b"#!", mode=0o2755, uid=1000, gid=1000)
        .file("bin/ping", b"\x7fELF", mode=0o755, xattrs={"security.capability": CAP_NET_RAW})
        .symlink("home/user/link", "/nowhere", uid=1000, gid=1001)
        .dir("tmp", mode=0o1777)
    )
    stats = apply(tar, tmp_path)
    null = os.lstat(tmp_path / "dev/null")
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    sda = os.lstat(tmp_path / "dev/sda")
    assert stat.S_ISBLK(sda.st_mode)
    assert sda.st_rdev == os.makedev(8, 0)
    assert sda.st_gid == 6
    odd = os.lstat(tmp_path / "dev/odd")
    assert odd.st_rdev == os.makedev(4095, 1048575)
    assert stat.S_IMODE(odd.st_mode) == 0o4640
    assert stat.S_ISFIFO(os.lstat(tmp_path / "run/initctl").st_mode)
    assert stat.S_IMODE(os.stat(tmp_path / "bin/su").st_mode) == 0o4755
    newgrp = os.stat(tmp_path / "usr/bin/newgrp")
    assert (stat.S_IMODE(newgrp.st_mode), newgrp.st_uid, newgrp.st_gid) == (0o2755, 1000, 1000)
    assert os.getxattr(tmp_path / "bin/ping", "security.capability") == CAP_NET_RAW
    link = os.lstat(tmp_path / "home/user/link")
    assert (link.st_uid, link.st_gid) == (1000, 1001)
    assert link.st_mtime_ns == FIXED_MTIME * 10**9
    assert stat.S_IMODE(os.stat(tmp_path / "tmp").st_mode) == 0o1777
    assert (stats.devices, stats.fifos) == (3, 1)


def test_an_invalid_capability_is_an_error_not_a_silent_loss(tmp_path) -> None:
    with pytest.raises(LayerError, match="file capabilities"):
        apply(TarBuilder().file("bin/ping", b"x", xattrs={"security.capability": b"\x01\x02"}), tmp_path)


def test_trusted_and_security_xattrs(tmp_path) -> None:
    apply(TarBuilder().file("f", b"x", xattrs={"trusted.app": b"1", "security.ima": b"\x03\x02"}), tmp_path)
    assert os.getxattr(tmp_path / "f", "trusted.app") == b"1"


def test_directory_mtimes_are_set_after_their_children(tmp_path) -> None:
    tar = TarBuilder().dir("a", mtime=1000).dir("a/b", mtime=2000).file("a/b/f", b"x", mtime=3000).dir(".", mtime=4000)
    apply(tar, tmp_path)
    assert os.stat(tmp_path / "a").st_mtime == 1000
    assert os.stat(tmp_path / "a/b").st_mtime == 2000
    assert os.stat(tmp_path / "a/b/f").st_mtime == 3000
    assert os.stat(tmp_path).st_mtime == 4000


def test_hardlink_to_a_device_and_a_symlink(tmp_path) -> None:
    apply(TarBuilder().char("c", 1, 3).link("c2", "c").symlink("s", "/etc").link("s2", "s"), tmp_path)
    assert os.lstat(tmp_path / "c").st_ino == os.lstat(tmp_path / "c2").st_ino
    assert os.lstat(tmp_path / "s").st_ino == os.lstat(tmp_path / "s2").st_ino
    assert os.readlink(tmp_path / "s2") == "/etc"


def _merged_tree(lowers) -> Dict[str, str]:
    from support.layertar import overlay

    code = (
        "import os\n"
        "result = {}\n"
        "for d, dirs, files in os.walk(merged):\n"
        "    for n in dirs + files:\n"
        "        p = os.path.join(d, n); r = os.path.relpath(p, merged)\n"
        "        result[r] = os.readlink(p) if os.path.islink(p) else ('dir' if os.path.isdir(p) else open(p).read())\n"
    )
    merged = os.path.join(os.path.dirname(str(lowers[0])), "merged")
    os.makedirs(merged, exist_ok=True)
    return overlay([str(p) for p in lowers], merged, code)


def test_a_stack_of_layers_mounted_with_overlayfs(tmp_path) -> None:
    base = TarBuilder().dir("etc").file("etc/motd", b"hello\n").file("etc/hosts", b"127.0.0.1\n")
    base.dir("var/cache").file("var/cache/a", b"a").file("var/cache/b", b"b").dir("opt/app").file("opt/app/v1", b"1")
    base.symlink("bin", "usr/bin").file("usr/bin/sh", b"#!")
    second = TarBuilder().whiteout("etc/motd").file("etc/hosts", b"10.0.0.1\n").opaque("var/cache")
    second.file("var/cache/c", b"c").whiteout("opt/app").dir("opt/app").file("opt/app/v2", b"2")
    third = TarBuilder().file("etc/motd", b"back\n").file("usr/bin/ls", b"#!").whiteout("bin")
    dirs = [tmp_path / name for name in ("l1", "l2", "l3")]
    for tar, dest in zip((base, second, third), dirs):
        apply(tar, dest)
    merged = _merged_tree(list(reversed(dirs)))
    assert merged == {
        "etc": "dir",
        "etc/motd": "back\n",
        "etc/hosts": "10.0.0.1\n",
        "var": "dir",
        "var/cache": "dir",
        "var/cache/c": "c",
        "opt": "dir",
        "opt/app": "dir",
        "opt/app/v2": "2",
        "usr": "dir",
        "usr/bin": "dir",
        "usr/bin/sh": "#!",
        "usr/bin/ls": "#!",
    }


@pytest.mark.parametrize("kind", ["gzip", "zstd", "plain"])
@pytest.mark.parametrize("helper", [False, True])
def test_apply_compressed(tmp_path, kind: str, helper: bool) -> None:
    tar = TarBuilder().dir("d", uid=3).file("d/f", b"data" * 5000).whiteout("old").tobytes() + b"\0" * 9000
    blob = {"gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress, "plain": bytes}[kind](tar)
    path = tmp_path / "blob"
    path.write_bytes(blob)
    dest = tmp_path / "dest"
    dest.mkdir()
    diff_id, stats = layers.apply_compressed(str(path), str(dest), helper=helper if kind != "plain" else None)
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (dest / "d/f").read_bytes() == b"data" * 5000
    assert whiteout(dest / "old")
    assert stats.whiteouts == 1


def test_apply_compressed_from_a_stream_without_a_file_descriptor(tmp_path) -> None:
    tar = TarBuilder().file("f", b"streamed").tobytes()
    diff_id = layers.apply_compressed(io.BytesIO(gzip.compress(tar)), str(tmp_path), helper=True)[0]
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert (tmp_path / "f").read_bytes() == b"streamed"


def test_a_truncated_blob_is_refused(tmp_path) -> None:
    blob = gzip.compress(TarBuilder().file("f", os.urandom(200_000)).tobytes())
    with pytest.raises(LayerError, match=r"truncated"):
        layers.apply_compressed(io.BytesIO(blob[:-5000]), str(tmp_path), helper=False)


def test_pax_global_header_written_by_git_archive_style_tools(tmp_path) -> None:
    info = tarfile.TarInfo("f")
    tar = TarBuilder()
    tar.raw(info, b"")
    data = tar.tobytes()
    from support.layertar import pax_header

    data = pax_header({"comment": "deadbeef", "uid": "99"}, kind=tarfile.XGLTYPE) + data
    layers.apply_layer(io.BytesIO(data), str(tmp_path))
    assert os.stat(tmp_path / "f").st_uid == 0
