"""Layer application without root: names, malformed archives, caps, plain files, dirs and links.

Everything here runs as any user (entries are owned by the caller); the
cases that need root (whiteout devices, trusted.* xattrs, other owners, the
hostile-layer corpus) are in tests/integration/.../test_layers_*.py.
"""

import gzip
import hashlib
import os
import stat
import tarfile

import pytest
from support.layertar import END_OF_ARCHIVE, FIXED_MTIME, TarBuilder, pax_header, ustar_member

from ansible_collections.berth.containers.plugins.module_utils.runtime import layerfs, layers
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import LayerError

UID, GID = os.getuid(), os.getgid()


def builder() -> TarBuilder:
    return TarBuilder(uid=UID, gid=GID)


def apply(data: bytes, dest: str, **kwargs: object) -> layers.LayerStats:
    import io

    return layers.apply_layer(io.BytesIO(data), dest, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("etc/passwd", "etc/passwd"),
        ("/etc/passwd", "etc/passwd"),
        ("./etc//passwd", "etc/passwd"),
        ("etc/./x/../passwd", "etc/passwd"),
        ("a/..", ""),
        ("./", ""),
        ("/", ""),
        ("", ""),
        ("usr/lib/", "usr/lib"),
    ],
)
def test_clean_name(name: str, clean: str) -> None:
    assert layers.clean_name(name) == clean


@pytest.mark.parametrize("name", ["..", "../etc/passwd", "a/../../x", "/../x", "./../x", "a\x00b", "x/" + "n" * 256])
def test_clean_name_refuses(name: str) -> None:
    with pytest.raises(LayerError):
        layers.clean_name(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000", 1_700_000_000_000_000_000),
        ("1700000000.123456789123", 1_700_000_000_123_456_789),
        ("1700000000.5", 1_700_000_000_500_000_000),
        ("-1.5", -1_500_000_000),
        (1700000000, 1_700_000_000_000_000_000),
    ],
)
def test_parse_time_ns_is_exact(value: object, expected: int) -> None:
    assert layers._parse_time_ns(value) == expected  # type: ignore[arg-type]


def test_files_dirs_symlinks_and_hardlinks(tmp_path) -> None:
    tar = (
        builder()
        .dir("etc", mode=0o750)
        .file("etc/hosts", b"127.0.0.1 localhost\n", mode=0o640)
        .link("etc/hosts.allow", "etc/hosts")
        .file("usr/local/lib/libnothing.so", b"\0\0", mode=0o755)
        .symlink("usr/local/lib/libnothing.so.2", "libnothing.so")
        .symlink("abs", "/usr/lib")
        .fifo("run/fifo", mode=0o620)
    )
    stats = apply(tar.tobytes(), str(tmp_path))
    assert (tmp_path / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert stat.S_IMODE(os.stat(tmp_path / "etc").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "etc/hosts").st_mode) == 0o640
    assert os.stat(tmp_path / "etc/hosts").st_ino == os.stat(tmp_path / "etc/hosts.allow").st_ino
    assert os.readlink(tmp_path / "usr/local/lib/libnothing.so.2") == "libnothing.so"
    assert os.readlink(tmp_path / "abs") == "/usr/lib"  # stored verbatim, never resolved
    assert stat.S_ISFIFO(os.lstat(tmp_path / "run/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(tmp_path / "run/fifo").st_mode) == 0o620
    assert os.lstat(tmp_path / "etc/hosts").st_mtime_ns == FIXED_MTIME * 10**9
    assert os.lstat(tmp_path / "abs").st_mtime_ns == FIXED_MTIME * 10**9
    assert os.lstat(tmp_path / "etc").st_mtime_ns == FIXED_MTIME * 10**9  # set after its children
    assert (stats.files, stats.directories, stats.symlinks, stats.hardlinks, stats.fifos) == (2, 1, 2, 1, 1)
    assert stats.entries == 7
    assert stats.bytes_written == 22


def test_implied_directories_are_0755_and_root_too(tmp_path) -> None:
    dest = tmp_path / "layer"
    dest.mkdir(mode=0o700)
    apply(builder().file("a/b/c/f", b"x").tobytes(), str(dest))
    for path in (dest, dest / "a", dest / "a/b", dest / "a/b/c"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o755


def test_directory_entry_after_its_children_sets_its_attributes(tmp_path) -> None:
    apply(builder().file("a/f", b"x").dir("a", mode=0o700, mtime=12345).tobytes(), str(tmp_path))
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o700
    assert os.stat(tmp_path / "a").st_mtime == 12345
    assert (tmp_path / "a/f").read_bytes() == b"x"


def test_setuid_and_sticky_bits_survive(tmp_path) -> None:
    apply(builder().file("bin/su", b"#!", mode=0o4755).dir("tmp", mode=0o1777).tobytes(), str(tmp_path))
    assert stat.S_IMODE(os.stat(tmp_path / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(tmp_path / "tmp").st_mode) == 0o1777


def test_nanosecond_mtimes_from_pax(tmp_path) -> None:
    tar = builder().file("f", b"x", pax={"mtime": "1700000000.123456789"})
    apply(tar.tobytes(), str(tmp_path))
    assert os.stat(tmp_path / "f").st_mtime_ns == 1_700_000_000_123_456_789


def test_user_xattrs_are_applied_and_overlay_ones_dropped(tmp_path) -> None:
    tar = builder().file("f", b"x", xattrs={"user.mime": b"text/plain", "user.overlay.redirect": b"/etc"})
    stats = apply(tar.tobytes(), str(tmp_path))
    assert os.getxattr(tmp_path / "f", "user.mime") == b"text/plain"
    assert "user.overlay.redirect" not in os.listxattr(tmp_path / "f")
    assert stats.skipped_xattrs == 0


def test_binary_xattr_values_survive(tmp_path) -> None:
    value = bytes(range(256))
    apply(builder().file("f", b"x", xattrs={"user.bin": value}).tobytes(), str(tmp_path))
    assert os.getxattr(tmp_path / "f", "user.bin") == value


def test_a_file_replaces_an_existing_symlink_instead_of_writing_through_it(tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    dest = tmp_path / "layer"
    dest.mkdir()
    os.symlink(outside, dest / "f")
    apply(builder().file("f", b"new").tobytes(), str(dest))
    assert outside.read_bytes() == b"keep"
    assert not os.path.islink(dest / "f")
    assert (dest / "f").read_bytes() == b"new"


def test_a_file_replacing_a_hardlinked_file_leaves_the_other_link_alone(tmp_path) -> None:
    (tmp_path / "a").write_bytes(b"old")
    os.link(tmp_path / "a", tmp_path / "b")
    apply(builder().file("b", b"new").tobytes(), str(tmp_path))
    assert (tmp_path / "a").read_bytes() == b"old"
    assert (tmp_path / "b").read_bytes() == b"new"


def test_zero_byte_and_end_only_archives_are_empty_layers(tmp_path) -> None:
    assert apply(b"", str(tmp_path)).entries == 0
    assert apply(END_OF_ARCHIVE, str(tmp_path)).entries == 0
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("tar", "message"),
    [
        (builder().file("a", b"1").file("./a", b"2"), "appears twice"),
        (builder().dir("d").dir("d/"), "appears twice"),
        (builder().file("../x", b"1"), "outside the layer"),
        (builder().symlink(".", "/tmp"), "layer root with a non-directory"),
        (builder().file("./", b""), "layer root with a non-directory"),
        (builder().link("l", "missing"), "not a file created earlier"),
        (builder().dir("d").link("l", "d"), "not a file created earlier"),
        (builder().link("l", "../../etc/passwd"), "outside the layer"),
        (builder().file("f", b"x").file("f/g", b"y"), "a regular file in this layer"),
        (builder().symlink("s", "d").file("s/x", b"y"), "a symlink in this layer"),
        (builder().file(".wh.d/x", b"y"), "whiteout name as a directory"),
        (builder().file("big", b"x" * 2048), "size limit"),
        (builder().symlink("s", ""), "invalid target"),
    ],
)
def test_refused(tmp_path, tar: TarBuilder, message: str) -> None:
    with pytest.raises(LayerError, match=message):
        apply(tar.tobytes(), str(tmp_path), max_bytes=1024)


def test_entry_cap(tmp_path) -> None:
    tar = builder()
    for index in range(11):
        tar.file(f"f{index}", b"")
    with pytest.raises(LayerError, match="more than 10 entries"):
        apply(tar.tobytes(), str(tmp_path), max_entries=10)


def test_path_length_cap(tmp_path) -> None:
    long_name = "/".join(["d" * 100] * 5)
    with pytest.raises(LayerError, match="longer than 300 bytes"):
        apply(builder().file(long_name, b"").tobytes(), str(tmp_path), max_path=300)


def test_corrupt_header_after_the_first_is_an_error_not_the_end(tmp_path) -> None:
    data = bytearray(builder().file("a", b"1").file("b", b"2").tobytes())
    second_header = 1024
    data[second_header + 148 : second_header + 156] = b"0000000\0"  # wrong checksum
    with pytest.raises(LayerError, match="not a valid tar archive"):
        apply(bytes(data), str(tmp_path))


def test_truncated_file_data_is_an_error(tmp_path) -> None:
    data = builder().file("a", b"x" * 5000).tobytes()
    with pytest.raises(LayerError, match=r"ends inside its data \(truncated\)"):
        apply(data[: 512 + 1000], str(tmp_path))


def test_not_a_tar(tmp_path) -> None:
    with pytest.raises(LayerError, match=r"not a valid tar archive: (bad checksum|invalid header)"):
        apply(b"\x89PNG" + b"\x01" * 1020, str(tmp_path))


def test_oversized_pax_header_is_refused_before_it_is_read(tmp_path) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 2 << 20
    data = info.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024
    with pytest.raises(LayerError, match="extended tar header of 2097152 bytes"):
        apply(data, str(tmp_path))


def test_long_chains_of_extended_headers_are_refused(tmp_path) -> None:
    member = tarfile.TarInfo("f")
    member.uid, member.gid = UID, GID
    data = pax_header({"comment": "x"}) * 20 + ustar_member(member, b"") + END_OF_ARCHIVE
    with pytest.raises(LayerError, match="extended tar headers in a row"):
        apply(data, str(tmp_path))


def test_pax_global_headers_are_ignored(tmp_path) -> None:
    member = tarfile.TarInfo("f")
    member.uid, member.gid, member.mode = UID, GID, 0o600
    glob = pax_header({"path": "../../escaped", "uid": "0"}, kind=tarfile.XGLTYPE)
    apply(glob + ustar_member(member, b"data") + END_OF_ARCHIVE, str(tmp_path))
    assert (tmp_path / "f").read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["f"]


def test_pax_path_record_is_cleaned_like_any_name(tmp_path) -> None:
    member = tarfile.TarInfo("innocent")
    member.uid, member.gid = UID, GID
    data = pax_header({"path": "../../evil"}) + ustar_member(member, b"x") + END_OF_ARCHIVE
    with pytest.raises(LayerError, match="outside the layer"):
        apply(data, str(tmp_path))


def test_sparse_files_are_refused(tmp_path) -> None:
    member = tarfile.TarInfo("sparse")
    member.uid, member.gid = UID, GID
    data = (
        pax_header(
            {
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.name": "sparse",
                "GNU.sparse.realsize": "4096",
            }
        )
        + ustar_member(member, b"1\n0\n4\n".ljust(512, b"\0") + b"data")
        + END_OF_ARCHIVE
    )
    with pytest.raises(LayerError, match="sparse"):
        apply(data, str(tmp_path))


@pytest.mark.parametrize("use_openat2", [True, False])
def test_openat2_and_the_component_walk_agree(tmp_path, use_openat2: bool) -> None:
    tar = builder().file("a/b/c/d/f", b"1").file("a/b/x", b"2").symlink("a/s", "b")
    apply(tar.tobytes(), str(tmp_path), use_openat2=use_openat2)
    assert (tmp_path / "a/b/c/d/f").read_bytes() == b"1"
    with pytest.raises(LayerError, match="symlink"):
        apply(builder().file("a/s/y", b"3").tobytes(), str(tmp_path), use_openat2=use_openat2)
    assert not (tmp_path / "a/b/y").exists()


def test_apply_compressed_returns_the_diff_id_of_every_byte(tmp_path) -> None:
    tar = builder().file("f", b"hello").tobytes() + b"\0" * 4096  # padding after the end counts
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(tar))
    dest = tmp_path / "dest"
    dest.mkdir()
    diff_id, stats = layers.apply_compressed(
        str(blob), str(dest), media_type="application/vnd.oci.image.layer.v1.tar+gzip"
    )
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert stats.files == 1
    assert (dest / "f").read_bytes() == b"hello"


def test_apply_compressed_with_a_missing_blob(tmp_path) -> None:
    with pytest.raises(LayerError, match="cannot open layer blob"):
        layers.apply_compressed(str(tmp_path / "missing"), str(tmp_path))


def test_dir_cache_keeps_the_last_results_open_under_eviction(tmp_path) -> None:
    """A caller may hold the fds of its last calls (hardlinks need two) while a deep walk evicts."""
    for index in range(3):
        os.makedirs(tmp_path / f"d{index}" / "sub")
    os.makedirs(tmp_path / "x/y/z/w/v")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    cache = layerfs.DirCache(root, use_openat2=False, size=2)
    try:
        first = cache.get("d0/sub")
        second = cache.get("d1/sub")
        cache.get("x/y/z/w/v")  # five new entries in a cache of two
        assert len(cache.cached()) <= 2 + 2
        assert os.fstat(first).st_ino == os.stat(tmp_path / "d0/sub").st_ino
        assert os.fstat(second).st_ino == os.stat(tmp_path / "d1/sub").st_ino
        for index in range(3):
            cache.get(f"d{index}/sub")
        assert len(cache.cached()) <= 2 + 3
    finally:
        cache.close()
        os.close(root)


def test_remove_at_handles_trees_deeper_than_the_recursion_limit(tmp_path) -> None:
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.dup(root)
        os.mkdir("deep", dir_fd=root)
        current = os.open("deep", os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
        os.close(fd)
        for _level in range(1100):
            os.mkdir("d", dir_fd=current)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=current)
            os.close(current)
            current = nxt
        os.close(current)
        layerfs.remove_at(root, "deep")
        assert os.listdir(tmp_path) == []
    finally:
        os.close(root)


@pytest.fixture
def few_fds():
    """Run with a soft limit of 200 open files (lowered only; restored after): the fd cache shrinks to fit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(200, soft), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("use_openat2", [True, False])
def test_deep_trees_need_a_bounded_number_of_fds(tmp_path, few_fds, use_openat2: bool) -> None:
    """A hostile layer may nest 2000 levels deep: walking, replacing and diffing it must not run out of fds.

    600 levels under a limit of 200 open files proves the point at a third of the cost.
    """
    import io

    from ansible_collections.berth.containers.plugins.module_utils.runtime import layerdiff

    deep = "/".join(["d"] * 600)
    try:
        apply(builder().file(f"{deep}/leaf", b"x").file("d2/x", b"y").tobytes(), str(tmp_path), use_openat2=use_openat2)
        assert (tmp_path / deep / "leaf").read_bytes() == b"x"
        out = io.BytesIO()
        stats = layerdiff.write_layer_tar(str(tmp_path), out)
        assert stats.directories == 601
        apply(builder().file("d", b"replaced the whole chain").tobytes(), str(tmp_path), use_openat2=use_openat2)
        assert (tmp_path / "d").read_bytes() == b"replaced the whole chain"
    finally:  # pytest's own clean-up recurses: remove the tree here whatever happened
        root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in os.listdir(tmp_path):
                layerfs.remove_at(root, name)
        finally:
            os.close(root)
