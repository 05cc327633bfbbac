"""Layer compression: sniffing, streaming decompression and compression.

Layers arrive gzip-, zstd-compressed or plain.  The format is taken from the
bytes (like Docker's ``DecompressStream``), not from the media type, which only
has to name a layer type we know.  Every reader here streams with bounded
memory (1 MiB chunks), so a "zip bomb" costs CPU and the applier's byte cap,
never RAM.

Helper programs (``unpigz``, ``zstd``) are resolved to absolute paths in the
host's system directories when this module is imported, never through
``$PATH`` and never inside a container, and they run as ``nobody`` with an
empty environment: a decompressor bug must not run with root's rights
(CVE-2014-9357, CVE-2026-41567).

Measured with ``bench/layers/unpack.py`` (160 MB tar, 47 MB gzip, unpacked
into tmpfs on the 2-core lab machine): ``unpigz`` + applier 101-120 MB/s
against 96-117 for zlib in process, so gzip goes through ``unpigz`` when the
host has it (``BERTH_DISABLE_PIGZ=1`` turns that off).  A reader thread in
front of zlib or zstandard measured no better than decompressing inline
(GIL hand-overs), so there is none.
"""

import hashlib
import os
import subprocess
import threading
import zlib
from contextlib import contextmanager
from typing import BinaryIO, Iterator, List, Optional, Tuple, Union

from .errors import InvalidArgument, LayerError

GZIP = "gzip"
ZSTD = "zstd"
PLAIN = "plain"

CHUNK = 1 << 20
SNIFF_BYTES = 8

GZIP_MAGIC = b"\x1f\x8b\x08"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# The compression each known layer media type announces; None = any (sniffed).
LAYER_MEDIA_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": PLAIN,
    "application/vnd.oci.image.layer.v1.tar+gzip": GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd": ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar": PLAIN,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar": PLAIN,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": GZIP,
    # Docker's media type is used for zstd layers too (moby pushes them so).
    "application/vnd.docker.image.rootfs.diff.tar.zstd": ZSTD,
}

_SYSTEM_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")
_NOBODY = 65534


def _host_program(name: str) -> Optional[str]:
    """Absolute path of a system program, looked up in fixed host directories only."""
    for directory in _SYSTEM_DIRS:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.realpath(path)
    return None


UNPIGZ = _host_program("unpigz")
ZSTD_CLI = _host_program("zstd")


def sniff(head: bytes) -> str:
    """The compression of a stream that starts with *head* (at least 4 bytes if available)."""
    if head.startswith(GZIP_MAGIC):
        return GZIP
    if head.startswith(ZSTD_MAGIC):
        return ZSTD
    # zstd skippable frames: magic 0x184D2A50..0x184D2A5F, little endian.
    if len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50:
        return ZSTD
    return PLAIN


def media_type_compression(media_type: str) -> str:
    """The compression a layer media type announces; refuse types we cannot apply."""
    base = media_type.split(";", 1)[0].strip()
    try:
        return LAYER_MEDIA_TYPES[base]
    except KeyError:
        raise LayerError(
            f"layer media type {media_type!r} is not supported (expected a tar, tar+gzip or tar+zstd layer; "
            "encrypted and foreign formats cannot be applied)"
        ) from None


class PrefixedReader:
    """A reader that returns *head* first, then the rest of *source* (undoes a sniff)."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self._head = head
        self._source = source

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0 or size >= len(self._head):
                data, self._head = self._head, b""
                if size < 0:
                    return data + self._source.read()
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._source.read(size)


class HashingReader:
    """Pass reads through while counting and hashing them (sha256 = the layer's diff_id)."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self._hash.update(data)
            self.size += len(data)
        return data

    def drain(self) -> int:
        """Read and hash the rest of the stream (padding after the tar's end); return its length."""
        drained = 0
        while True:
            data = self.read(CHUNK)
            if not data:
                return drained
            drained += len(data)

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class _ChunkReader:
    """Base of the decompressors: ``read(n)`` over a producer of chunks."""

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0
        self._eof = False

    def _produce(self, limit: int) -> bytes:
        """Return up to *limit* new bytes; ``b""`` only at the end of the data."""
        raise NotImplementedError

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while True:
                data = self.read(CHUNK)
                if not data:
                    return b"".join(parts)
                parts.append(data)
        if self._offset < len(self._buffer):
            end = self._offset + size
            data = self._buffer[self._offset : end]
            self._offset = min(end, len(self._buffer))
            return data
        if self._eof or size == 0:
            return b""
        data = self._produce(size)
        if not data:
            self._eof = True
            return b""
        if len(data) > size:
            self._buffer, self._offset = data, size
            return data[:size]
        return data

    def close(self) -> None:
        """Release resources (helper processes, threads)."""


class GzipReader(_ChunkReader):
    """Streaming gunzip of possibly several members with zlib, output bounded per call.

    Trailing bytes after the last member that do not start another member are
    ignored, as GNU gzip and unpigz (Docker's fast path) do.
    """

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._done = False

    def _produce(self, limit: int) -> bytes:
        while not self._done:
            data = self._pending or self._inflater.unconsumed_tail
            self._pending = b""
            if not data:
                data = self._source.read(CHUNK)
                if not data:
                    raise LayerError("the gzip stream of the layer is truncated (it ends inside a member)")
            try:
                out = self._inflater.decompress(data, limit)
            except zlib.error as exc:
                raise LayerError(f"the layer is not valid gzip data: {exc}") from None
            if self._inflater.eof:
                self._next_member()
            if out:
                return out
        return b""

    def _next_member(self) -> None:
        rest = self._inflater.unused_data
        if len(rest) < len(GZIP_MAGIC):
            rest += self._source.read(CHUNK)
        if rest.startswith(GZIP_MAGIC):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._pending = rest
        else:
            self._done = True


class ZstdFrameWalker:
    """Follows zstd frame boundaries in the compressed bytes (RFC 8878), without decompressing.

    ``stream_reader`` ends quietly when a stream is cut inside a frame; this
    walker knows whether the bytes seen so far end on a frame boundary, and
    refuses bytes that are not a frame.  It reads headers and skips block
    bodies, so it costs next to nothing.
    """

    _MAGIC = 0xFD2FB528

    def __init__(self) -> None:
        self._state = "magic"
        self._need = 4
        self._buffer = b""
        self._skip = 0
        self._checksum = False
        self.frames = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                taken = min(self._skip, len(view))
                self._skip -= taken
                view = view[taken:]
                if not self._skip:
                    self._after_skip()
                continue
            taken = min(self._need - len(self._buffer), len(view))
            self._buffer += bytes(view[:taken])
            view = view[taken:]
            if len(self._buffer) == self._need:
                field, self._buffer = self._buffer, b""
                self._field(field)

    def _expect(self, state: str, need: int) -> None:
        self._state, self._need = state, need

    def _field(self, field: bytes) -> None:
        state = self._state
        if state == "magic":
            magic = int.from_bytes(field, "little")
            if magic == self._MAGIC:
                self._expect("descriptor", 1)
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._expect("skippable-size", 4)
            else:
                raise LayerError("the layer's zstd data is followed by bytes that are not a zstd frame")
        elif state == "descriptor":
            descriptor = field[0]
            if descriptor & 0x08:
                raise LayerError("the layer's zstd frame header is invalid (reserved bit set)")
            single_segment = bool(descriptor & 0x20)
            self._checksum = bool(descriptor & 0x04)
            size_flag = descriptor >> 6
            content_size = (1 if single_segment else 0, 2, 4, 8)[size_flag]
            header = (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03] + content_size
            if header:
                self._expect("header", header)
            else:
                self._expect("block", 3)
        elif state in ("header", "checksum"):
            self._next_block_or_frame(state)
        elif state == "block":
            value = int.from_bytes(field, "little")
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:
                raise LayerError("the layer's zstd data has a block of a reserved type")
            self._state = "block-last" if last else "block-more"
            self._skip = 1 if kind == 1 else size
            if not self._skip:
                self._after_skip()
        elif state == "skippable-size":
            self._state = "skippable-body"
            self._skip = int.from_bytes(field, "little")
            if not self._skip:
                self._after_skip()

    def _next_block_or_frame(self, state: str) -> None:
        if state == "header":
            self._expect("block", 3)
        else:
            self._frame_done()

    def _after_skip(self) -> None:
        if self._state == "block-more":
            self._expect("block", 3)
        elif self._state == "block-last":
            if self._checksum:
                self._expect("checksum", 4)
            else:
                self._frame_done()
        else:  # the end of a skippable frame
            self._frame_done()

    def _frame_done(self) -> None:
        self.frames += 1
        self._expect("magic", 4)

    @property
    def at_boundary(self) -> bool:
        return self._state == "magic" and not self._buffer and not self._skip


class _TapReader:
    """Pass reads through to the caller and a copy of the bytes to *sink*."""

    def __init__(self, source: BinaryIO, sink: ZstdFrameWalker) -> None:
        self._source = source
        self._sink = sink

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if data:
            self._sink.feed(data)
        return data

    def readinto(self, buffer: bytearray) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class ZstdReader(_ChunkReader):
    """Streaming zstd (all frames, skippable ones included) with the ``zstandard`` module.

    ``stream_reader`` bounds each call's output; a :class:`ZstdFrameWalker`
    on the compressed bytes notices a stream cut inside a frame, which
    ``stream_reader`` alone would end quietly.
    """

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        import zstandard

        self._error = zstandard.ZstdError
        self._frames = ZstdFrameWalker()
        decompressor = zstandard.ZstdDecompressor(max_window_size=1 << 31)
        self._reader = decompressor.stream_reader(
            _TapReader(source, self._frames), read_size=CHUNK, read_across_frames=True, closefd=False
        )

    def _produce(self, limit: int) -> bytes:
        try:
            data = self._reader.read(limit)
        except self._error as exc:
            raise LayerError(f"the layer is not valid zstd data: {exc}") from None
        if not data and not self._frames.at_boundary:
            raise LayerError("the zstd stream of the layer is truncated (it ends inside a frame)")
        return data

    def close(self) -> None:
        self._reader.close()


class ProcessReader(_ChunkReader):
    """Decompression by a host helper program (unpigz, zstd) running as nobody.

    The compressed bytes come from a file descriptor when the source has one
    (no copy through Python), else a feeder thread writes them to its stdin.
    A non-zero exit (truncated or corrupt data) raises :class:`LayerError`.
    """

    def __init__(self, argv: List[str], source: BinaryIO, what: str) -> None:
        super().__init__()
        self._what = what
        self._feeder: Optional[threading.Thread] = None
        self._feed_error: Optional[BaseException] = None
        fd = _real_file_descriptor(source)
        stdin = fd if fd is not None else subprocess.PIPE
        self._proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            cwd="/",
            close_fds=True,
            bufsize=CHUNK,
            **_unprivileged(),
        )
        _widen_pipe(self._proc.stdout)
        if fd is None:
            self._feeder = threading.Thread(target=self._feed, args=(source,), name=f"berth-feed-{what}", daemon=True)
            self._feeder.start()

    def _feed(self, source: BinaryIO) -> None:
        stdin = self._proc.stdin
        if stdin is None:
            return
        try:
            while True:
                data = source.read(CHUNK)
                if not data:
                    break
                stdin.write(data)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # reported by close(): the reader must not hang
            self._feed_error = exc
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _produce(self, limit: int) -> bytes:
        data = self._proc.stdout.read1(limit)  # type: ignore[union-attr]  # stdout=PIPE
        if not data:
            self._finish()
        return data

    def _finish(self) -> None:
        status = self._proc.wait()
        if self._feeder is not None:
            self._feeder.join()
        if self._feed_error is not None:
            raise self._feed_error
        if status != 0:
            message = self._proc.stderr.read(4096).decode(errors="replace").strip()  # type: ignore[union-attr]
            raise LayerError(f"{self._what} could not decompress the layer (exit status {status}): {message}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._feeder is not None:
            self._feeder.join(timeout=5)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


def _real_file_descriptor(source: BinaryIO) -> Optional[int]:
    """The fd of a regular file positioned where *source* is, or None for other streams."""
    try:
        fd = source.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    import stat

    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if hasattr(source, "tell") and source.tell() != os.lseek(fd, 0, os.SEEK_CUR):
            return None
    except OSError:
        return None
    return fd


def _widen_pipe(stream: Optional[BinaryIO]) -> None:
    """Ask for a 1 MiB pipe buffer (the default 64 KiB costs a syscall pair per 64 KiB)."""
    if stream is None:
        return
    import fcntl

    try:
        fcntl.fcntl(stream.fileno(), 1031, CHUNK)  # F_SETPIPE_SZ
    except OSError:
        pass


def _unprivileged() -> dict:
    if os.geteuid() != 0:
        return {}
    return {"user": _NOBODY, "group": _NOBODY, "extra_groups": []}


def _zstandard_available() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def gzip_helper_default() -> bool:
    """Whether gzip layers go through ``unpigz`` (measured faster here) rather than zlib."""
    return UNPIGZ is not None and os.environ.get("BERTH_DISABLE_PIGZ", "") in ("", "0")


def decompressor(source: BinaryIO, compression: str, helper: Optional[bool] = None) -> _ChunkReader:
    """A reader of the plain bytes of *source*; the caller must ``close()`` it.

    ``helper=None`` picks the measured-faster path; True/False force the host
    program or the in-process library.
    """
    if compression == GZIP:
        use_helper = gzip_helper_default() if helper is None else helper
        if use_helper:
            if UNPIGZ is None:
                raise LayerError("unpigz is not installed on this host; install pigz or decompress in process")
            return ProcessReader([UNPIGZ, "-dc"], source, "unpigz")
        return GzipReader(source)
    if compression == ZSTD:
        use_helper = (not _zstandard_available()) if helper is None else helper
        if use_helper:
            if ZSTD_CLI is None:
                raise LayerError(
                    "cannot decompress a zstd layer: install the Python 'zstandard' module or the zstd program"
                )
            return ProcessReader([ZSTD_CLI, "-dc", "-q", "--no-progress"], source, "zstd")
        return ZstdReader(source)
    if compression == PLAIN:
        return _PlainReader(source)
    raise InvalidArgument(f"unknown compression {compression!r} (expected gzip, zstd or plain)")


class _PlainReader(_ChunkReader):
    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source

    def _produce(self, limit: int) -> bytes:
        return self._source.read(limit)


@contextmanager
def open_decompressed(
    source: BinaryIO, media_type: Optional[str] = None, helper: Optional[bool] = None
) -> Iterator[Tuple[str, BinaryIO]]:
    """Sniff *source* and yield ``(compression, reader of the plain tar bytes)``.

    The media type, when given, must be a known layer type; the bytes decide
    the format (registries mislabel layers; Docker sniffs too).
    """
    if media_type is not None:
        media_type_compression(media_type)
    fd = _real_file_descriptor(source)
    if fd is not None:
        head = os.pread(fd, SNIFF_BYTES, os.lseek(fd, 0, os.SEEK_CUR))
        stream: BinaryIO = source
    else:
        head = source.read(SNIFF_BYTES)
        stream = PrefixedReader(head, source)  # type: ignore[assignment]
    compression = sniff(head)
    reader = decompressor(stream, compression, helper)
    try:
        yield compression, reader  # type: ignore[misc]
    finally:
        reader.close()


class GzipWriter:
    """Deterministic gzip: header mtime 0, no file name, OS byte 255 (unknown), level 6 by default."""

    def __init__(self, out: BinaryIO, level: int = 6) -> None:
        self._out = out
        self._deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL)
        self._crc = 0
        self._size = 0
        xfl = b"\x02" if level == 9 else b"\x04" if level == 1 else b"\x00"
        out.write(GZIP_MAGIC + b"\x00" + b"\x00\x00\x00\x00" + xfl + b"\xff")

    def write(self, data: bytes) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        compressed = self._deflater.compress(data)
        if compressed:
            self._out.write(compressed)
        return len(data)

    def close(self) -> None:
        self._out.write(self._deflater.flush())
        self._out.write(self._crc.to_bytes(4, "little") + (self._size & 0xFFFFFFFF).to_bytes(4, "little"))


class ZstdWriter:
    """zstd compression with the ``zstandard`` module (one frame, content checksum on)."""

    def __init__(self, out: BinaryIO, level: int = 3) -> None:
        import zstandard

        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=0)
        self._writer = compressor.stream_writer(out, closefd=False)

    def write(self, data: bytes) -> int:
        return self._writer.write(data)

    def close(self) -> None:
        self._writer.close()


class ProcessWriter:
    """Compression by a host helper program (``zstd -c``) running as nobody; its output goes to *out*."""

    def __init__(self, argv: List[str], out: BinaryIO, what: str) -> None:
        self._out = out
        self._what = what
        self._error: Optional[BaseException] = None
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            cwd="/",
            close_fds=True,
            **_unprivileged(),
        )
        self._drainer = threading.Thread(target=self._drain, name=f"berth-{what}-out", daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        stdout = self._proc.stdout
        try:
            while True:
                data = stdout.read1(CHUNK)  # type: ignore[union-attr]  # stdout=PIPE
                if not data:
                    return
                self._out.write(data)
        except BaseException as exc:  # reported by close()
            self._error = exc

    def write(self, data: bytes) -> int:
        try:
            self._proc.stdin.write(data)  # type: ignore[union-attr]  # stdin=PIPE
        except BrokenPipeError:
            self.close()
        return len(data)

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        status = self._proc.wait()
        self._drainer.join()
        message = self._proc.stderr.read(4096).decode(errors="replace").strip()  # type: ignore[union-attr]
        if self._error is not None:
            raise self._error
        if status != 0:
            raise LayerError(f"{self._what} could not compress the layer (exit status {status}): {message}")


def _zstd_writer(out: BinaryIO, level: int) -> Union[ZstdWriter, ProcessWriter]:
    if _zstandard_available():
        return ZstdWriter(out, level)
    if ZSTD_CLI is None:
        raise LayerError("cannot write a zstd layer: install the Python 'zstandard' module or the zstd program")
    return ProcessWriter([ZSTD_CLI, "-c", "-q", "--no-progress", f"-{level}"], out, "zstd")


class _PlainWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, data: bytes) -> int:
        self._out.write(data)
        return len(data)

    def close(self) -> None:
        """Nothing to flush."""


class _CountingHashingWriter:
    """Hash and count what goes to *out* (the compressed blob's digest and size)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)


class LayerWriter:
    """Write a tar stream once, getting diff_id, blob digest and blob size in one pass.

    ``write()`` takes the plain tar bytes; ``close()`` finishes the
    compression.  Then ``diff_id`` (sha256 of the tar), ``digest`` and
    ``size`` (of the compressed blob) are set.
    """

    def __init__(self, out: BinaryIO, compression: str = GZIP, level: Optional[int] = None) -> None:
        self._blob = _CountingHashingWriter(out)
        self._tar_hash = hashlib.sha256()
        self.tar_size = 0
        self.compression = compression
        if compression == GZIP:
            self._compressor = GzipWriter(self._blob, 6 if level is None else level)  # type: ignore[arg-type]
        elif compression == ZSTD:
            self._compressor = _zstd_writer(self._blob, 3 if level is None else level)  # type: ignore[arg-type,assignment]
        elif compression == PLAIN:
            self._compressor = _PlainWriter(self._blob)  # type: ignore[arg-type,assignment]
        else:
            raise InvalidArgument(f"unknown compression {compression!r} (expected gzip, zstd or plain)")
        self.diff_id = ""
        self.digest = ""
        self.size = 0

    def write(self, data: bytes) -> int:
        self._tar_hash.update(data)
        self.tar_size += len(data)
        return self._compressor.write(data)

    def flush(self) -> None:
        """tarfile calls flush(); compression state is only flushed by close()."""

    def close(self) -> None:
        self._compressor.close()
        self.diff_id = "sha256:" + self._tar_hash.hexdigest()
        self.digest = "sha256:" + self._blob.hash.hexdigest()
        self.size = self._blob.size

    @property
    def media_type(self) -> str:
        suffix = {GZIP: "+gzip", ZSTD: "+zstd", PLAIN: ""}[self.compression]
        return "application/vnd.oci.image.layer.v1.tar" + suffix
