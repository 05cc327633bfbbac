"""Commit round trip (E18): a real overlay upper dir -> layer tar -> applied layer -> the same view.

Needs root: the container's changes are made through a real overlayfs mount
(in a private mount namespace, ``unshare -m``), which writes whiteout devices
and ``trusted.overlay.*`` xattrs into the upper directory.
"""

import io
import os
import stat
import tarfile
from typing import Any, Dict, List

import pytest
from support.layertar import TarBuilder, overlay, snapshot

from ansible_collections.berth.containers.plugins.module_utils.runtime import layerdiff, layers
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import LayerError

CAP_NET_RAW = bytes.fromhex("01000002" + "00200000" + "00000000" * 3)

CHANGES = """
import os, socket
m = merged
os.unlink(m + "/etc/motd")                                   # lower file removed -> whiteout
os.rename(m + "/etc/issue", m + "/etc/issue.old")            # rename of a lower file -> whiteout + new file
with open(m + "/etc/hosts", "a") as f:                       # copy-up (overlay writes trusted.overlay.origin)
    f.write("10.0.0.1 db\\n")
import shutil
shutil.rmtree(m + "/var/cache")                              # rm -rf dir && mkdir dir -> opaque
os.mkdir(m + "/var/cache", 0o750)
with open(m + "/var/cache/fresh", "w") as f:
    f.write("fresh")
shutil.rmtree(m + "/opt/app")                                # a whole lower directory removed
with open(m + "/new", "w") as f:
    f.write("new")
os.link(m + "/new", m + "/new2")                             # hardlinks survive
os.link(m + "/new", m + "/etc/new3")
os.setxattr(m + "/new", "user.note", b"kept")
os.setxattr(m + "/usr/bin/ping", "security.capability", CAP)  # copy-up of a lower binary, with a capability
os.chown(m + "/new", 1000, 1001)
os.chmod(m + "/new", 0o4750)
os.symlink("/usr/bin/ping", m + "/usr/bin/pong")
os.mkfifo(m + "/run/fifo")
os.mknod(m + "/dev-null", 0o020666, os.makedev(1, 3))
os.chmod(m + "/dev-null", 0o666)
s = socket.socket(socket.AF_UNIX); s.bind(m + "/run/sock")    # sockets cannot go in a tar
os.makedirs(m + "/home/u/.cache")
os.chmod(m + "/etc", 0o751)                                   # metadata-only change of a lower dir
result = None
"""


def lower_layer() -> TarBuilder:
    tar = TarBuilder()
    tar.dir("etc").file("etc/motd", b"motd\n").file("etc/issue", b"issue\n").file("etc/hosts", b"127.0.0.1 lo\n")
    tar.dir("var/cache").file("var/cache/old1", b"1").file("var/cache/old2", b"2")
    tar.dir("opt/app").file("opt/app/v1", b"v1").dir("run").dir("usr/bin").file("usr/bin/ping", b"\x7fELF", mode=0o755)
    return tar


@pytest.fixture
def container(tmp_path) -> Dict[str, str]:
    """A lower layer, an upper and work dir with the CHANGES made through a real overlay mount."""
    paths = {name: str(tmp_path / name) for name in ("lower", "upper", "work", "merged")}
    for path in paths.values():
        os.mkdir(path)
    layers.apply_layer(lower_layer().stream(), paths["lower"])
    code = CHANGES.replace("CAP", repr(CAP_NET_RAW))
    overlay([paths["lower"]], paths["merged"], code, upper=paths["upper"], work=paths["work"])
    return paths


def tar_bytes(upper: str) -> bytes:
    out = io.BytesIO()
    layerdiff.write_layer_tar(upper, out)
    return out.getvalue()


def members(data: bytes) -> Dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_the_upper_dir_really_has_overlay_metadata(container) -> None:
    """Guard: the fixture exercises what the converter must handle."""
    upper = container["upper"]
    assert stat.S_ISCHR(os.lstat(f"{upper}/etc/motd").st_mode)
    assert os.getxattr(f"{upper}/var/cache", "trusted.overlay.opaque") == b"y"
    assert any(name.startswith("trusted.overlay.") for name in os.listxattr(f"{upper}/etc/hosts"))


def test_whiteouts_opaque_dirs_hardlinks_and_no_overlay_xattrs(container) -> None:
    found = members(tar_bytes(container["upper"]))
    for deleted in ("etc/.wh.motd", "etc/.wh.issue", "opt/.wh.app"):
        assert found[deleted].isreg()
        assert found[deleted].size == 0
        assert found[deleted].mode == 0o600
    assert "etc/issue.old" in found
    assert found["var/cache"].isdir()
    assert found["var/cache/.wh..wh..opq"].isreg()
    assert found["var/cache/.wh..wh..opq"].mode == 0o750
    assert found["var/cache/fresh"].isreg()
    names = list(found)
    assert names.index("var/cache/.wh..wh..opq") == names.index("var/cache") + 1
    assert found["etc/new3"].isreg()  # the first path of the inode in walk order is the file
    for link in ("new", "new2"):
        assert found[link].islnk()
        assert found[link].linkname == "etc/new3"
    assert found["etc/new3"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    assert (
        found["usr/bin/ping"].pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape")
        == CAP_NET_RAW
    )
    assert (found["etc/new3"].uid, found["etc/new3"].gid, found["etc/new3"].mode) == (1000, 1001, 0o4750)
    assert "run/sock" not in found
    for member in found.values():
        assert not any("overlay" in key for key in member.pax_headers), member.name
        assert member.uname == ""
        assert member.gname == ""


def test_the_diff_is_deterministic(container) -> None:
    assert tar_bytes(container["upper"]) == tar_bytes(container["upper"])


def _comparable(tree: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    result = {}
    for path, info in tree.items():
        if info["type"] == stat.S_IFSOCK:
            continue
        info = dict(info)
        info["xattrs"] = {k: v for k, v in info["xattrs"].items() if not k.startswith("trusted.overlay.")}
        result[path] = info
    return result


def _inode_groups(root: str) -> List[List[str]]:
    groups: Dict[int, List[str]] = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) and not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                groups.setdefault(st.st_ino, []).append(os.path.relpath(path, root))
    return sorted(sorted(group) for group in groups.values() if len(group) > 1)


def test_applying_the_diff_reproduces_the_upper_dir(container, tmp_path) -> None:
    upper = container["upper"]
    applied = tmp_path / "applied"
    applied.mkdir()
    layers.apply_layer(io.BytesIO(tar_bytes(upper)), str(applied), [container["lower"]])
    expected = _comparable(snapshot(upper))
    got = _comparable(snapshot(str(applied)))
    expected.pop(".")
    got.pop(".")
    assert got == expected
    assert _inode_groups(str(applied)) == _inode_groups(upper) == [["etc/new3", "new", "new2"]]
    for path in ("new", "etc/hosts", "var/cache", "etc"):
        assert int(os.lstat(applied / path).st_mtime) == int(os.lstat(os.path.join(upper, path)).st_mtime)


MERGED_VIEW = """
import os
result = {}
for d, dirs, files in os.walk(merged):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        st = os.lstat(p)
        entry = [oct(st.st_mode), st.st_uid, st.st_gid]
        if os.path.islink(p):
            entry.append(os.readlink(p))
        elif os.path.isfile(p):
            entry.append(open(p, "rb").read().hex())
        result[os.path.relpath(p, merged)] = entry
"""


def test_the_committed_image_shows_the_containers_view(container, tmp_path) -> None:
    applied = tmp_path / "applied"
    applied.mkdir()
    layers.apply_layer(io.BytesIO(tar_bytes(container["upper"])), str(applied), [container["lower"]])
    mount = tmp_path / "view"
    mount.mkdir()
    container_view = overlay([container["upper"], container["lower"]], str(mount), MERGED_VIEW)
    image_view = overlay([str(applied), container["lower"]], str(mount), MERGED_VIEW)
    container_view.pop("run/sock")
    assert image_view == container_view
    assert "etc/motd" not in image_view
    assert sorted(k for k in image_view if k.startswith("var/cache/")) == ["var/cache/fresh"]
    assert "opt/app" not in image_view


def test_an_unchanged_container_has_an_empty_diff(tmp_path) -> None:
    paths = {name: str(tmp_path / name) for name in ("lower", "upper", "work", "merged")}
    for path in paths.values():
        os.mkdir(path)
    layers.apply_layer(lower_layer().stream(), paths["lower"])
    overlay(
        [paths["lower"]],
        paths["merged"],
        "import os\nresult = os.listdir(merged)",
        upper=paths["upper"],
        work=paths["work"],
    )
    assert layerdiff.diff_is_empty(paths["upper"])
    blob = layerdiff.write_layer_blob(paths["upper"], io.BytesIO())
    assert blob.stats.empty
    assert blob.diff_id == layerdiff.EMPTY_LAYER_DIFF_ID


def test_redirect_dir_uppers_are_refused(container) -> None:
    os.setxattr(os.path.join(container["upper"], "var/cache"), "trusted.overlay.redirect", b"/opt/app")
    with pytest.raises(LayerError, match=r"trusted\.overlay\.redirect.*commit refused"):
        tar_bytes(container["upper"])


def test_large_owner_ids_round_trip(tmp_path) -> None:
    upper = tmp_path / "upper"
    (upper / "home").mkdir(parents=True)
    (upper / "home/f").write_bytes(b"x")
    os.chown(upper / "home", 3_000_000, 4_000_000)
    os.chown(upper / "home/f", 4_294_967_294, 65534)
    applied = tmp_path / "applied"
    applied.mkdir()
    layers.apply_layer(io.BytesIO(tar_bytes(str(upper))), str(applied))
    assert (os.stat(applied / "home").st_uid, os.stat(applied / "home").st_gid) == (3_000_000, 4_000_000)
    assert (os.stat(applied / "home/f").st_uid, os.stat(applied / "home/f").st_gid) == (4_294_967_294, 65534)
