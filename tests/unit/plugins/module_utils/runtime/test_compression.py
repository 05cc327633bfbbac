"""Layer compression: sniffing, streaming decompression (in process and by host helpers), compression."""

import gzip
import hashlib
import io
import os
import subprocess
import zlib

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import compression
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument, LayerError

DATA = os.urandom(300_000) + b"layer " * 400_000  # incompressible then compressible: several chunks
SKIPPABLE_FRAME = bytes([0x5A, 0x2A, 0x4D, 0x18]) + (6).to_bytes(4, "little") + b"ignore"


def zstd(data: bytes) -> bytes:
    """Compressed by the zstd program: an oracle independent of the code under test."""
    return subprocess.run(["zstd", "-c", "-q", "-3"], input=data, capture_output=True, check=True).stdout


def unzstd(blob: bytes) -> bytes:
    return subprocess.run(["zstd", "-d", "-c", "-q"], input=blob, capture_output=True, check=True).stdout


HAVE_ZSTANDARD = compression._zstandard_available()
# ansible-test units installs tests/unit/requirements.txt only; zstd layers then go through the zstd program.
needs_zstandard = pytest.mark.skipif(not HAVE_ZSTANDARD, reason="the zstandard module is not installed here")


def decompress_all(blob: bytes, helper: bool) -> bytes:
    with compression.open_decompressed(io.BytesIO(blob), helper=helper) as (_kind, reader):
        parts = []
        while True:
            data = reader.read(1 << 20)
            if not data:
                return b"".join(parts)
            parts.append(data)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x1f\x8b\x08\x00", compression.GZIP),
        (b"\x28\xb5\x2f\xfd\x00", compression.ZSTD),
        (SKIPPABLE_FRAME[:8], compression.ZSTD),
        (bytes([0x50, 0x2A, 0x4D, 0x18]), compression.ZSTD),
        (b"\x1f\x8b\x09", compression.PLAIN),  # gzip magic with an unknown method
        (b"etc/\x00\x00", compression.PLAIN),
        (b"", compression.PLAIN),
        (bytes([0x60, 0x2A, 0x4D, 0x18]), compression.PLAIN),  # outside the skippable range
    ],
)
def test_sniff(head: bytes, expected: str) -> None:
    assert compression.sniff(head) == expected


@pytest.mark.parametrize("helper", [False, True])
def test_gzip_with_several_members(helper: bool) -> None:
    blob = gzip.compress(DATA[:1000]) + gzip.compress(b"") + gzip.compress(DATA[1000:])
    assert decompress_all(blob, helper) == DATA


@pytest.mark.parametrize("helper", [False, True])
def test_gzip_trailing_garbage_and_zeros_are_ignored_like_gnu_gzip(helper: bool) -> None:
    assert decompress_all(gzip.compress(DATA) + b"\0" * 512, helper) == DATA
    assert decompress_all(gzip.compress(DATA) + b"junk", helper) == DATA


@pytest.mark.parametrize("helper", [False, True])
def test_truncated_gzip_is_an_error(helper: bool) -> None:
    blob = gzip.compress(DATA)
    with pytest.raises(LayerError, match=r"truncated|could not decompress"):
        decompress_all(blob[: len(blob) // 2], helper)


@pytest.mark.parametrize("helper", [False, True])
def test_corrupt_gzip_is_an_error(helper: bool) -> None:
    blob = bytearray(gzip.compress(DATA))
    blob[40:60] = b"\xff" * 20
    with pytest.raises(LayerError):
        decompress_all(bytes(blob), helper)


@pytest.mark.parametrize("helper", [pytest.param(False, marks=needs_zstandard), True])
def test_zstd_with_several_frames_and_a_skippable_frame(helper: bool) -> None:
    blob = SKIPPABLE_FRAME + zstd(DATA[:10]) + SKIPPABLE_FRAME + zstd(DATA[10:])
    assert decompress_all(blob, helper) == DATA


@pytest.mark.parametrize("helper", [pytest.param(False, marks=needs_zstandard), True])
@pytest.mark.parametrize("cut", [1, 4, 5000])
def test_truncated_zstd_is_an_error(helper: bool, cut: int) -> None:
    blob = zstd(DATA)
    with pytest.raises(LayerError, match=r"truncated|could not decompress"):
        decompress_all(blob[:-cut], helper)


@pytest.mark.parametrize("helper", [pytest.param(False, marks=needs_zstandard), True])
def test_garbage_after_zstd_frames_is_an_error(helper: bool) -> None:
    with pytest.raises(LayerError, match=r"not a zstd frame|could not decompress"):
        decompress_all(zstd(DATA) + b"garbage!", helper)


def test_the_frame_walker_knows_frame_boundaries() -> None:
    """Pure Python, so it runs where the zstandard module is missing too."""
    frames = [zstd(b""), zstd(DATA[:50_000]), SKIPPABLE_FRAME, zstd(DATA)]
    frames.append(
        subprocess.run(["zstd", "-c", "-q", "--no-check"], input=b"x" * 99, capture_output=True, check=True).stdout
    )
    stream = b"".join(frames)
    boundaries = {sum(len(frame) for frame in frames[:index]) for index in range(len(frames) + 1)}
    for cut in sorted(boundaries | {1, 3, 4, 5, 7, 100, len(stream) - 1, len(stream) - 4}):
        walker = compression.ZstdFrameWalker()
        for offset in range(0, cut, 7001):  # odd chunk sizes split headers
            walker.feed(stream[offset : min(offset + 7001, cut)])
        assert walker.at_boundary == (cut in boundaries), cut
    walker = compression.ZstdFrameWalker()
    walker.feed(stream)
    assert walker.frames == len(frames)
    with pytest.raises(LayerError, match="not a zstd frame"):
        walker.feed(b"\x00\x01\x02\x03")


def test_plain_passes_through() -> None:
    assert decompress_all(DATA, helper=False) == DATA


def test_output_is_bounded_per_read_even_for_a_bomb() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    with compression.open_decompressed(io.BytesIO(bomb), helper=False) as (_kind, reader):
        assert len(reader.read(4096)) == 4096
        assert len(reader.read(1 << 20)) <= 1 << 20


def test_helper_reads_a_file_descriptor_directly(tmp_path) -> None:
    path = tmp_path / "layer.gz"
    path.write_bytes(gzip.compress(DATA))
    with open(path, "rb") as handle, compression.open_decompressed(handle, helper=True) as (kind, reader):
        assert kind == compression.GZIP
        assert reader.read() == DATA


def test_hashing_reader_covers_everything_up_to_eof() -> None:
    reader = compression.HashingReader(io.BytesIO(DATA))
    assert reader.read(10) == DATA[:10]
    assert reader.drain() == len(DATA) - 10
    assert reader.digest() == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert reader.size == len(DATA)


def test_helpers_are_absolute_host_paths() -> None:
    for program in (compression.UNPIGZ, compression.ZSTD_CLI):
        assert program is None or (os.path.isabs(program) and os.access(program, os.X_OK))


def test_helper_runs_unprivileged(tmp_path) -> None:
    """A decompressor bug must not run as root: the helper process is nobody (65534) when we are root."""
    source = tmp_path / "empty"
    source.write_bytes(b"")
    with open(source, "rb") as handle:
        reader = compression.ProcessReader(["/usr/bin/id", "-u"], handle, "id")
        try:
            uid = int(reader.read().strip())
        finally:
            reader.close()
    assert uid == (65534 if os.geteuid() == 0 else os.geteuid())


def test_helper_failure_names_the_program() -> None:
    reader = compression.ProcessReader(["/bin/false"], io.BytesIO(b"x" * 10), "false")
    try:
        with pytest.raises(LayerError, match=r"false could not decompress the layer \(exit status 1\)"):
            reader.read()
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        ("application/vnd.oci.image.layer.v1.tar+gzip", compression.GZIP),
        ("application/vnd.oci.image.layer.v1.tar+zstd", compression.ZSTD),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", compression.GZIP),
        ("application/vnd.oci.image.layer.v1.tar", compression.PLAIN),
    ],
)
def test_media_types(media_type: str, expected: str) -> None:
    assert compression.media_type_compression(media_type) == expected


@pytest.mark.parametrize(
    "media_type",
    ["application/vnd.oci.image.layer.v1.tar+gzip+encrypted", "application/json", "application/x-bzip2"],
)
def test_unknown_media_types_are_refused(media_type: str) -> None:
    with pytest.raises(LayerError, match="not supported"):
        compression.media_type_compression(media_type)
    with pytest.raises(LayerError), compression.open_decompressed(io.BytesIO(gzip.compress(b"x")), media_type):
        pass


def test_the_bytes_decide_not_the_media_type() -> None:
    """Registries mislabel layers; Docker sniffs too."""
    blob = zstd(DATA)
    with compression.open_decompressed(io.BytesIO(blob), "application/vnd.oci.image.layer.v1.tar+gzip") as (
        kind,
        reader,
    ):
        assert kind == compression.ZSTD
        assert reader.read() == DATA


@pytest.mark.parametrize("kind", [compression.GZIP, compression.ZSTD, compression.PLAIN])
def test_layer_writer_hashes_tar_and_blob_in_one_pass(kind: str) -> None:
    out = io.BytesIO()
    writer = compression.LayerWriter(out, kind)
    for offset in range(0, len(DATA), 100_000):
        writer.write(DATA[offset : offset + 100_000])
    writer.close()
    blob = out.getvalue()
    assert writer.diff_id == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert writer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert writer.size == len(blob)
    assert (unzstd(blob) if kind == compression.ZSTD else decompress_all(blob, helper=False)) == DATA
    assert writer.media_type.startswith("application/vnd.oci.image.layer.v1.tar")


def test_zstd_compression_by_the_program_as_nobody() -> None:
    out = io.BytesIO()
    writer = compression.ProcessWriter([compression.ZSTD_CLI or "zstd", "-c", "-q", "-3"], out, "zstd")
    for offset in range(0, len(DATA), 300_000):
        writer.write(DATA[offset : offset + 300_000])
    writer.close()
    assert unzstd(out.getvalue()) == DATA


def test_compression_helper_failure_is_reported() -> None:
    writer = compression.ProcessWriter(["/bin/false"], io.BytesIO(), "false")

    def feed_and_close() -> None:
        writer.write(b"x" * 10)
        writer.close()

    with pytest.raises(LayerError, match=r"false could not compress the layer \(exit status 1\)"):
        feed_and_close()


def test_gzip_output_is_deterministic_and_standard() -> None:
    first, second = io.BytesIO(), io.BytesIO()
    for out in (first, second):
        writer = compression.GzipWriter(out)
        writer.write(DATA)
        writer.close()
    blob = first.getvalue()
    assert blob == second.getvalue()
    assert blob[4:8] == b"\0\0\0\0"  # header mtime 0
    assert gzip.decompress(blob) == DATA
    assert zlib.decompress(blob, 16 + zlib.MAX_WBITS) == DATA


def test_unknown_compression_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        compression.LayerWriter(io.BytesIO(), "bzip2")
    with pytest.raises(InvalidArgument):
        compression.decompressor(io.BytesIO(), "bzip2")
