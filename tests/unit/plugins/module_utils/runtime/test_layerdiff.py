"""Upper directory -> layer tar without root: order, determinism, hardlinks, empty diffs, refusals.

Whiteout devices, opaque (trusted.*) directories and a real overlay mount
need root: tests/integration/plugins/module_utils/runtime/test_layers_commit.py.
"""

import gzip
import hashlib
import io
import os
import socket
import tarfile

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import layerdiff, layers
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import LayerError


def members(data: bytes) -> list:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getmembers()


def tar_of(upper: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    layerdiff.write_layer_tar(upper, out, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.fixture
def upper(tmp_path):
    root = tmp_path / "upper"
    (root / "b/dir").mkdir(parents=True)
    (root / "a").write_bytes(b"first")
    (root / "b/dir/file").write_bytes(b"data" * 1000)
    os.link(root / "a", root / "b/link")
    os.symlink("/etc/passwd", root / "c")
    os.mkfifo(root / "fifo")
    os.setxattr(root / "a", "user.note", b"kept")
    os.utime(root / "a", ns=(1_700_000_000_999_999_999, 1_700_000_000_999_999_999))
    return root


def test_entries_are_sorted_parents_first_with_numeric_ids(upper) -> None:
    found = members(tar_of(str(upper)))
    assert [m.name for m in found] == ["a", "b", "b/dir", "b/dir/file", "b/link", "c", "fifo"]
    assert all(m.uname == "" and m.gname == "" for m in found)
    assert all(m.uid == os.getuid() for m in found)


def test_hardlinks_name_the_first_path(upper) -> None:
    by_name = {m.name: m for m in members(tar_of(str(upper)))}
    assert by_name["a"].isreg()
    assert by_name["b/link"].islnk()
    assert by_name["b/link"].linkname == "a"


def test_xattrs_symlinks_and_mtimes(upper) -> None:
    by_name = {m.name: m for m in members(tar_of(str(upper)))}
    assert by_name["a"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    assert by_name["c"].issym()
    assert by_name["c"].linkname == "/etc/passwd"
    assert by_name["a"].mtime == 1_700_000_000  # truncated to the second, no atime/ctime
    assert "atime" not in by_name["a"].pax_headers
    assert by_name["fifo"].isfifo()


def test_output_is_deterministic(upper) -> None:
    first = tar_of(str(upper))
    os.utime(upper / "b/dir/file")  # atime/ctime changes do not matter, content mtime does
    os.utime(upper / "b/dir/file", ns=(1, os.stat(upper / "b/dir/file").st_mtime_ns))
    assert tar_of(str(upper)) == tar_of(str(upper))
    assert len(first) % 512 == 0


def test_round_trip_through_the_applier(upper, tmp_path) -> None:
    dest = tmp_path / "applied"
    dest.mkdir()
    layers.apply_layer(io.BytesIO(tar_of(str(upper))), str(dest))
    assert (dest / "b/dir/file").read_bytes() == b"data" * 1000
    assert os.stat(dest / "a").st_ino == os.stat(dest / "b/link").st_ino
    assert os.getxattr(dest / "a", "user.note") == b"kept"
    assert os.readlink(dest / "c") == "/etc/passwd"
    assert os.stat(dest / "a").st_mtime_ns == 1_700_000_000 * 10**9


def test_sockets_are_skipped(tmp_path) -> None:
    root = tmp_path / "u"
    root.mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        out = io.BytesIO()
        stats = layerdiff.write_layer_tar(str(root), out)
    assert stats.skipped_sockets == 1
    assert stats.empty
    assert layerdiff.diff_is_empty(str(root))


def test_empty_diff_is_dockers_empty_layer(tmp_path) -> None:
    root = tmp_path / "u"
    root.mkdir()
    assert layerdiff.diff_is_empty(str(root))
    out = io.BytesIO()
    blob = layerdiff.write_layer_blob(str(root), out)
    assert blob.stats.empty
    assert blob.diff_id == layerdiff.EMPTY_LAYER_DIFF_ID
    assert blob.digest == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    assert blob.size == len(out.getvalue())
    assert gzip.decompress(out.getvalue()) == b"\0" * 1024
    assert blob.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"


def test_exclude_leaves_out_paths_and_subtrees(upper) -> None:
    names = [m.name for m in members(tar_of(str(upper), exclude=["b/dir", "/fifo"]))]
    assert names == ["a", "b", "b/link", "c"]
    assert not layerdiff.diff_is_empty(str(upper), exclude=["b"])


def test_layer_blob_digests_match_the_bytes(upper) -> None:
    out = io.BytesIO()
    blob = layerdiff.write_layer_blob(str(upper), out, compression="zstd")
    import subprocess

    tar = subprocess.run(["zstd", "-d", "-c", "-q"], input=out.getvalue(), capture_output=True, check=True).stdout
    assert blob.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert blob.digest == "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()
    assert tar == tar_of(str(upper))
    assert blob.media_type.endswith("+zstd")


@pytest.mark.parametrize("name", ["user.overlay.redirect", "user.overlay.metacopy"])
def test_redirect_and_metacopy_are_refused(tmp_path, name: str) -> None:
    root = tmp_path / "u"
    (root / "d").mkdir(parents=True)
    os.setxattr(root / "d", name, b"/elsewhere")
    with pytest.raises(LayerError, match="commit refused"):
        tar_of(str(root))


def test_other_overlay_xattrs_are_dropped(tmp_path) -> None:
    root = tmp_path / "u"
    (root / "d").mkdir(parents=True)
    os.setxattr(root / "d", "user.overlay.impure", b"y")
    os.setxattr(root / "d", "user.overlay.origin", b"\x00\xfb")
    os.setxattr(root / "d", "user.overlay.opaque", b"y")  # the userxattr form of an opaque dir
    found = members(tar_of(str(root)))
    assert [m.name for m in found] == ["d", "d/.wh..wh..opq"]
    assert not any("overlay" in key for m in found for key in m.pax_headers)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # v3 (magic 0x03000000, 24 bytes with a root id) becomes v2 (20 bytes)
        (
            bytes.fromhex("01000003" + "00200000" * 2 + "00000000" * 2 + "e8030000"),
            bytes.fromhex("01000002" + "00200000" * 2 + "00000000" * 2),
        ),
        (bytes.fromhex("01000002" + "00200000" * 4), bytes.fromhex("01000002" + "00200000" * 4)),
        (b"\x01", b"\x01"),
    ],
)
def test_capability_v3_becomes_v2(value: bytes, expected: bytes) -> None:
    assert layerdiff._capability_v2(value) == expected


def test_missing_upper_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(LayerError, match="cannot open the container's upper directory"):
        tar_of(str(tmp_path / "missing"))


def test_names_that_are_not_utf8_long_names_and_old_times_round_trip(tmp_path) -> None:
    root = tmp_path / "u"
    root.mkdir()
    raw = os.fsencode(root)
    os.mkdir(raw + b"/caf\xe9")
    with open(raw + b"/caf\xe9/\xff\xfe", "wb") as handle:
        handle.write(b"bin")
    long_name = "x" * 200
    os.makedirs(root / long_name / long_name)
    (root / long_name / long_name / "f").write_bytes(b"deep")
    os.symlink("/" + "t" * 300, root / "longlink")
    os.utime(root / "longlink", ns=(-86400 * 10**9, -86400 * 10**9), follow_symlinks=False)
    dest = tmp_path / "applied"
    dest.mkdir()
    layers.apply_layer(io.BytesIO(tar_of(str(root))), str(dest))
    with open(os.fsencode(dest) + b"/caf\xe9/\xff\xfe", "rb") as handle:
        assert handle.read() == b"bin"
    assert (dest / long_name / long_name / "f").read_bytes() == b"deep"
    assert os.readlink(dest / "longlink") == "/" + "t" * 300
    assert os.lstat(dest / "longlink").st_mtime == -86400
