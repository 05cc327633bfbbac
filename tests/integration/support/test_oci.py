"""The image builder: deterministic tars and layers, configs, manifests, overlay conversion, layouts."""

import gzip
import io
import json
import os
import subprocess
import tarfile
from typing import List

import pytest
from support import oci
from support.oci import Entry, History, ImageConfig, Layout, Platform

ENTRIES: List[Entry] = [
    oci.file("z-last", "z\n"),
    oci.directory("a"),
    oci.file("a/file", "hello\n", mode=0o600, uid=1000, gid=100),
    oci.symlink("a/link", "/a/file"),
    oci.hardlink("a/second", "a/file"),
    oci.file("x/attr", "x\n", xattrs={"user.berth": b"v", "security.capability": b"\x01\x00\xff"}),
    oci.whiteout("etc/gone"),
    oci.opaque("opt/app"),
    oci.fifo("a/pipe"),
    oci.char_device("dev-null", 1, 3),
]


def _members(data: bytes) -> List[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def test_tar_is_deterministic_sorted_and_anonymous() -> None:
    first = oci.tar_bytes(ENTRIES)
    assert first == oci.tar_bytes(list(reversed(ENTRIES)))
    members = _members(first)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[0] == "a"
    assert all(m.mtime == oci.FIXED_MTIME for m in members)
    assert all(m.uname == "" and m.gname == "" for m in members)
    by_name = {m.name: m for m in members}
    assert (by_name["a/file"].uid, by_name["a/file"].gid, by_name["a/file"].mode) == (1000, 100, 0o600)
    assert (by_name["z-last"].uid, by_name["z-last"].gid, by_name["z-last"].mode) == (0, 0, 0o644)
    assert (by_name["a/link"].type, by_name["a/link"].linkname) == (tarfile.SYMTYPE, "/a/file")
    assert (by_name["a/second"].type, by_name["a/second"].linkname) == (tarfile.LNKTYPE, "a/file")
    assert (by_name["etc/.wh.gone"].type, by_name["etc/.wh.gone"].size) == (tarfile.REGTYPE, 0)
    assert by_name["opt/app/.wh..wh..opq"].isfile()
    assert by_name["a/pipe"].isfifo()
    device = by_name["dev-null"]
    assert (device.type, device.devmajor, device.devminor) == (tarfile.CHRTYPE, 1, 3)


def test_pax_records_only_where_needed() -> None:
    data = oci.tar_bytes(ENTRIES)
    by_name = {m.name: m for m in _members(data)}
    assert by_name["x/attr"].pax_headers["SCHILY.xattr.user.berth"] == "v"
    raw_capability = by_name["x/attr"].pax_headers["SCHILY.xattr.security.capability"]
    assert raw_capability.encode("utf-8", "surrogateescape") == b"\x01\x00\xff"
    assert by_name["a/file"].pax_headers == {}
    assert data.count(b"SCHILY.xattr.") == 2


def test_gzip_layers_carry_no_timestamp_or_name_and_hash_in_one_pass(tmp_path: object) -> None:
    layout = Layout(str(tmp_path))
    layer = layout.add_layer(ENTRIES, "gzip")
    blob = layout.read_blob(layer.digest)
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] & 0x08 == 0, "no FNAME field"
    assert blob[4:8] == b"\0\0\0\0", "header mtime 0"
    assert oci.sha256_digest(blob) == layer.digest
    assert layer.size == len(blob)
    assert oci.sha256_digest(gzip.decompress(blob)) == layer.diff_id
    assert layer.diff_id == oci.sha256_digest(oci.tar_bytes(ENTRIES))
    again = Layout(str(tmp_path / "again")).add_layer(ENTRIES, "gzip")  # type: ignore[operator]
    assert again == layer


def test_every_compression_gives_the_same_diff_id(tmp_path: object) -> None:
    import zstandard

    layout = Layout(str(tmp_path))
    layers = {c: layout.add_layer(ENTRIES, c) for c in oci.COMPRESSIONS}
    assert len({layer.diff_id for layer in layers.values()}) == 1
    assert len({layer.digest for layer in layers.values()}) == 3
    assert layers["none"].digest == layers["none"].diff_id
    zstd_blob = layout.read_blob(layers["zstd"].digest)
    assert zstd_blob[:4] == b"\x28\xb5\x2f\xfd"
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(zstd_blob)).read()
    assert oci.sha256_digest(plain) == layers["zstd"].diff_id
    assert layers["zstd"].media_type("oci") == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert layers["none"].media_type("docker") == "application/vnd.docker.image.rootfs.diff.tar"
    assert layers["gzip"].media_type("docker") == "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_bad_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="stay inside the layer"):
        oci.file("../escape")
    with pytest.raises(ValueError, match="stay inside the layer"):
        oci.file("a/../../escape")
    with pytest.raises(ValueError, match="duplicate tar entry"):
        oci.tar_bytes([oci.file("a"), oci.file("/a")])
    with pytest.raises(ValueError, match="earlier entry of the same layer"):
        oci.tar_bytes([oci.hardlink("a", "z"), oci.file("z")])


def test_config_and_manifests_in_both_formats(tmp_path: object) -> None:
    layout = Layout(str(tmp_path))
    layers = [layout.add_layer([oci.file("one", "1")]), layout.add_layer([oci.file("two", "2")], "zstd")]
    config = ImageConfig(
        env=["PATH=/bin", "A=b"],
        cmd=["sh", "-c", "true"],
        entrypoint=["/bin/tini", "--"],
        working_dir="/srv",
        exposed_ports=["80", "53/udp"],
        labels={"k": "v"},
        user="1000:1000",
        stop_signal="SIGQUIT",
        volumes=["/data"],
    )
    history = [History("ADD one"), History("ENV A=b", empty_layer=True), History("ADD two", comment="c")]
    image = layout.add_image(layers, config, history, Platform.parse("linux/arm/v7"))
    parsed = image.config
    assert image.config_digest == oci.sha256_digest(image.config_bytes) == image.image_id
    assert parsed["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    assert (parsed["os"], parsed["architecture"], parsed["variant"]) == ("linux", "arm", "v7")
    assert parsed["config"] == {
        "Env": ["PATH=/bin", "A=b"],
        "Cmd": ["sh", "-c", "true"],
        "Entrypoint": ["/bin/tini", "--"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
        "StopSignal": "SIGQUIT",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Labels": {"k": "v"},
        "Volumes": {"/data": {}},
    }
    assert [h.get("empty_layer", False) for h in parsed["history"]] == [False, True, False]
    oci_manifest = json.loads(image.manifest_bytes("oci"))
    docker_manifest = json.loads(image.manifest_bytes("docker"))
    assert oci_manifest["mediaType"] == oci.OCI_MANIFEST
    assert oci_manifest["config"]["mediaType"] == oci.OCI_CONFIG
    assert docker_manifest["mediaType"] == oci.DOCKER_MANIFEST
    assert docker_manifest["config"]["mediaType"] == oci.DOCKER_CONFIG
    assert oci_manifest["config"]["digest"] == docker_manifest["config"]["digest"] == image.config_digest
    assert [d["digest"] for d in oci_manifest["layers"]] == [d["digest"] for d in docker_manifest["layers"]]
    assert image.manifest_digest("oci") != image.manifest_digest("docker")
    with pytest.raises(ValueError, match="non-empty entries"):
        layout.add_image(layers, config, [History("only one")])


def test_index_and_manifest_list(tmp_path: object) -> None:
    layout = Layout(str(tmp_path))
    layer = layout.add_layer([oci.file("f", "x")])
    images = [layout.add_image([layer], platform=Platform.parse(p)) for p in ("linux/amd64", "linux/arm64")]
    index = layout.add_index(images)
    oci_index = json.loads(index.manifest_bytes("oci"))
    docker_list = json.loads(index.manifest_bytes("docker"))
    assert oci_index["mediaType"] == oci.OCI_INDEX
    assert docker_list["mediaType"] == oci.DOCKER_LIST
    assert [m["digest"] for m in oci_index["manifests"]] == [i.manifest_digest("oci") for i in images]
    assert [m["digest"] for m in docker_list["manifests"]] == [i.manifest_digest("docker") for i in images]
    assert [m["platform"]["architecture"] for m in docker_list["manifests"]] == ["amd64", "arm64"]
    assert index.for_platform("linux/arm64") is images[1]
    with pytest.raises(KeyError, match="no image for linux/s390x"):
        index.for_platform("linux/s390x")


def test_layout_round_trip_and_skopeo_reads_it(tmp_path: object, skopeo: str) -> None:
    path = str(tmp_path)
    layout = Layout(path)
    image = layout.add_image([layout.add_layer(ENTRIES)], ImageConfig(cmd=["true"]))
    layout.tag("v1", image)
    layout.tag("v1", image)  # re-tagging replaces, never duplicates
    with open(os.path.join(path, "oci-layout"), encoding="ascii") as handle:
        assert json.load(handle) == {"imageLayoutVersion": "1.0.0"}
    reopened = Layout(path)
    assert reopened.tags() == ["v1"]
    loaded = reopened.get("v1")
    assert isinstance(loaded, oci.Image)
    assert loaded.manifest_bytes("oci") == image.manifest_bytes("oci")
    result = subprocess.run([skopeo, "inspect", f"oci:{path}:v1"], capture_output=True, text=True, check=True)
    inspected = json.loads(result.stdout)
    assert inspected["Digest"] == image.manifest_digest("oci")
    assert inspected["Layers"] == [image.layers[0].digest]
    with pytest.raises(KeyError, match="no tag 'v2'"):
        reopened.get("v2")


def test_entries_from_dir_keeps_owners_links_and_xattrs(tmp_path: object) -> None:
    root = str(tmp_path)
    os.makedirs(f"{root}/d/sub")
    with open(f"{root}/d/file", "w", encoding="ascii") as handle:
        handle.write("data")
    os.chown(f"{root}/d/file", 1234, 5678)
    os.chmod(f"{root}/d/file", 0o4750)
    os.link(f"{root}/d/file", f"{root}/d/another")
    os.symlink("file", f"{root}/d/sym")
    os.mkfifo(f"{root}/d/fifo")
    os.setxattr(f"{root}/d/sub", "user.note", b"kept")
    entries = {e.path: e for e in oci.entries_from_dir(root, exclude=["d/fifo"])}
    assert sorted(entries) == ["d", "d/another", "d/file", "d/sub", "d/sym"]
    assert entries["d/another"].kind == "file"  # first in tar order keeps the data ...
    assert (entries["d/file"].kind, entries["d/file"].link) == ("hardlink", "d/another")  # ... later names link
    assert (entries["d/another"].uid, entries["d/another"].gid, entries["d/another"].mode) == (1234, 5678, 0o4750)
    assert entries["d/sym"].link == "file"
    assert entries["d/sub"].xattrs == {"user.note": b"kept"}
    assert all(e.mtime == oci.FIXED_MTIME for e in entries.values())
    forced = {e.path: e for e in oci.entries_from_dir(root, owner=(0, 0), keep_mtime=True)}
    assert (forced["d/another"].uid, forced["d/another"].gid) == (0, 0)
    assert forced["d/fifo"].kind == "fifo"
    assert forced["d/sub"].mtime == int(os.stat(f"{root}/d/sub").st_mtime)


def test_overlay_upper_dir_becomes_oci_whiteouts(tmp_path: object) -> None:
    """A real overlay: delete a file and a dir, replace a dir; the upper dir converts to OCI form."""
    base = str(tmp_path)
    lower, upper, work, merged = (os.path.join(base, d) for d in ("lower", "upper", "work", "merged"))
    for d in (f"{lower}/gone-dir/sub", f"{lower}/replaced", upper, work, merged):
        os.makedirs(d)
    for name in ("gone-file", "kept", "replaced/old", "gone-dir/sub/f"):
        with open(f"{lower}/{name}", "w", encoding="ascii") as handle:
            handle.write(name)
    script = (
        'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3,index=off,redirect_dir=off,metacopy=off" "$4"'
        ' && cd "$4" && rm gone-file && rm -r gone-dir replaced && mkdir replaced && echo new > replaced/new'
        " && echo changed > kept"
    )
    subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", lower, upper, work, merged],
        check=True,
    )
    assert os.path.exists(f"{lower}/gone-file"), "the lower dir is never modified"
    entries = {e.path: e for e in oci.entries_from_dir(upper, overlay=True)}
    assert sorted(entries) == [
        ".wh.gone-dir",
        ".wh.gone-file",
        "kept",
        "replaced",
        "replaced/.wh..wh..opq",
        "replaced/new",
    ]
    assert entries[".wh.gone-file"].kind == "file"
    assert all(
        not name.startswith(("trusted.overlay.", "user.overlay.")) for e in entries.values() for name in e.xattrs
    )
    layout = Layout(os.path.join(base, "layout"))
    data = layout.read_blob(layout.add_layer(entries.values(), "none").digest)
    assert b"trusted.overlay" not in data
