"""The last records of a container's json-file log, read from the end.

A container that has logged for months has large log files (and rotated
ones, ``<id>-json.log.1``...); showing its last 100 lines must not read them
all.  :func:`tail` reads backwards in blocks from the newest file and only
goes on to older files while it still needs records.
"""

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

BLOCK = 64 * 1024


def lines_from_end(path: str) -> Iterator[bytes]:
    """The non-empty lines of *path*, newest first, read backwards in blocks (nothing if it does not exist)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - a generator: closed when it finishes or is dropped
    except FileNotFoundError:
        return
    with handle:
        position = os.fstat(handle.fileno()).st_size
        carry = b""
        while position > 0:
            start = max(0, position - BLOCK)
            handle.seek(start)
            data = handle.read(position - start) + carry
            position = start
            parts = data.split(b"\n")
            # The first part may be the end of a line that starts in an earlier block.
            carry = parts.pop(0) if position > 0 else b""
            for part in reversed(parts):
                if part:
                    yield part
        if carry:
            yield carry


def decode(line: bytes) -> Optional[Dict[str, Any]]:
    """One json-file record as ``{"stream", "time", "text"}`` (text without its newline); None if unreadable."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("log"), str):
        return None
    text = record["log"]
    return {
        "stream": str(record.get("stream", "stdout")),
        "time": str(record.get("time", "")),
        "text": text[:-1] if text.endswith("\n") else text,
    }


def tail(paths: Sequence[str], count: Optional[int]) -> List[Dict[str, Any]]:
    """The last *count* records (all when None) of the log files *paths* (oldest file first), oldest first."""
    newest_first: List[Dict[str, Any]] = []
    if count is not None and count <= 0:
        return newest_first
    for path in reversed(paths):
        for line in lines_from_end(path):
            record = decode(line)
            if record is None:
                continue
            newest_first.append(record)
            if count is not None and len(newest_first) >= count:
                newest_first.reverse()
                return newest_first
    newest_first.reverse()
    return newest_first
