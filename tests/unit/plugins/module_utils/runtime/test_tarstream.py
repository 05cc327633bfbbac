"""TarSource: the forward-only byte source tarfile parses layers from."""

import io
import os
import tarfile
from typing import List

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime.tarstream import TarSource

DATA = os.urandom(10_000)


class Chunked:
    """A pipe-like source: returns at most *chunk* bytes per read, and counts the reads."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.stream = io.BytesIO(data)
        self.chunk = chunk
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self.stream.read(min(size, self.chunk))


@pytest.mark.parametrize("chunk", [1, 7, 512, 4096, 100_000])
def test_reads_across_chunks_return_the_bytes_in_order(chunk: int) -> None:
    source = TarSource(Chunked(DATA, chunk), 4096)  # type: ignore[arg-type]
    parts: List[bytes] = []
    for size in (1, 511, 512, 3000, 1, 5975):
        data = source.read(size)
        assert len(data) == size
        parts.append(data)
    assert b"".join(parts) == DATA
    assert source.tell() == len(DATA)
    assert source.read(10) == b""


@pytest.mark.parametrize("chunk", [3, 1000, 100_000])
def test_views_cover_the_range_without_copying(chunk: int) -> None:
    source = TarSource(Chunked(DATA, chunk), 4096)  # type: ignore[arg-type]
    source.read(100)
    views = source.views(5000)
    assert all(isinstance(view, memoryview) for view in views)
    assert b"".join(views) == DATA[100:5100]
    assert source.tell() == 5100
    assert source.read(10) == DATA[5100:5110]


def test_views_stop_short_at_the_end() -> None:
    source = TarSource(Chunked(DATA, 999), 4096)  # type: ignore[arg-type]
    source.seek(9000)
    assert b"".join(source.views(5000)) == DATA[9000:]
    assert source.views(10) == []


def test_seek_goes_forward_by_reading_and_refuses_to_go_back() -> None:
    chunked = Chunked(DATA, 1000)
    source = TarSource(chunked, 4096)  # type: ignore[arg-type]
    assert source.seek(2500) == 2500
    assert source.read(3) == DATA[2500:2503]
    assert source.seek(2503) == 2503  # staying put is fine
    with pytest.raises(OSError, match="only be read forward"):
        source.seek(100)
    with pytest.raises(OSError, match="only be read forward"):
        source.seek(0, 1)
    assert source.seek(20_000) == len(DATA)  # past the end: stops at the end, as a short read would


def test_read_of_everything() -> None:
    source = TarSource(Chunked(DATA, 333), 4096)  # type: ignore[arg-type]
    source.read(10)
    assert source.read() == DATA[10:]


def test_tarfile_parses_a_pipe_through_it_in_one_forward_pass() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for number in range(5):
            content = os.urandom(700 * number)
            info = tarfile.TarInfo(f"dir/file-{number}-" + "x" * 120)  # long names: PAX headers
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    chunked = Chunked(buffer.getvalue(), 1000)
    source = TarSource(chunked, 4096)  # type: ignore[arg-type]
    archive = tarfile.TarFile(fileobj=source, mode="r")  # type: ignore[arg-type]
    names = []
    while True:
        member = archive.next()
        if member is None:
            break
        names.append(member.name)
        if member.size:
            source.seek(member.offset_data)
            assert sum(len(view) for view in source.views(member.size)) == member.size
    assert names == [f"dir/file-{number}-" + "x" * 120 for number in range(5)]
    assert source.tell() <= len(buffer.getvalue())
