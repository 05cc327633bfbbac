"""A forward-only byte source that lets ``tarfile`` parse a pipe without its stream buffer.

``tarfile.open(mode="r|")`` wraps a non-seekable stream in its ``_Stream``,
whose every read re-slices the whole read-ahead buffer: a 512-byte header
read copies up to ``bufsize`` bytes.  On Debian's 121 MB base layer that
memmove was the largest single cost of an unpack (17% of a pull's CPU,
measured with perf).  :class:`TarSource` gives ``tarfile.TarFile`` (mode
``"r"``) the ``read``/``tell``/``seek`` it needs: seeks only go forward (by
reading and discarding), so the archive is still read exactly once, in
order, like a stream; and file data can be taken as views of the chunks the
decompressor produced, never copied in Python.
"""

import errno
from typing import BinaryIO, List

_NO_BYTES = b""


class TarSource:
    """Read *source* (a ``read(n)`` object) forward only, in its own chunks."""

    def __init__(self, source: BinaryIO, chunk_size: int) -> None:
        self._source = source
        self._chunk_size = chunk_size
        self._chunk = _NO_BYTES
        self._start = 0
        self._position = 0

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move forward to *offset* (reading what lies between); moving back is an error."""
        if whence != 0 or offset < self._position:
            raise OSError(errno.ESPIPE, "a layer's tar stream can only be read forward")
        remaining = offset - self._position
        while remaining:
            if not self._fill():
                break
            taken = min(remaining, len(self._chunk) - self._start)
            self._start += taken
            self._position += taken
            remaining -= taken
        return self._position

    def _fill(self) -> bool:
        """Make sure unread bytes are buffered; False at the end of the source."""
        if self._start < len(self._chunk):
            return True
        self._chunk = self._source.read(self._chunk_size)
        self._start = 0
        return bool(self._chunk)

    def read(self, size: int = -1) -> bytes:
        """Up to *size* bytes (fewer only at the end); headers and padding, small reads."""
        if size is None or size < 0:
            return b"".join(self.views(1 << 62))
        if not self._fill():
            return _NO_BYTES
        end = self._start + size
        if end <= len(self._chunk):
            data = self._chunk[self._start : end]
            self._start = end
            self._position += size
            return data
        return b"".join(self.views(size))

    def views(self, size: int) -> List[memoryview]:
        """The next *size* bytes as views of the source's chunks (fewer only at the end); no copy."""
        pieces: List[memoryview] = []
        remaining = size
        while remaining and self._fill():
            end = min(len(self._chunk), self._start + remaining)
            pieces.append(memoryview(self._chunk)[self._start : end])
            taken = end - self._start
            self._start = end
            self._position += taken
            remaining -= taken
        return pieces
