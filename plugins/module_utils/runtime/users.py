"""Who a container process runs as: Docker's ``User`` resolved by hand.

The container's ``/etc/passwd`` and ``/etc/group`` are parsed here, never
through NSS (``pwd``/``grp`` would load the ``libnss_*`` modules named by the
*image's* ``nsswitch.conf``, CVE-2019-14271).  Parsing is bounded (file size,
group count) and numbers are strict decimals within 0..2**31-1, because an
out-of-range uid that wraps to 0 is root (CVE-2024-40635) and an endless
``/etc/group`` is a denial of service (CVE-2026-47262).  Supplementary
groups come from the container's ``/etc/group`` so group-based denials keep
working (CVE-2022-36109).
"""

import os
import stat
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple

from .errors import ContainerError

MAX_ID = 2**31 - 1
MAX_FILE_BYTES = 1 << 20
MAX_GROUPS = 65536


class PasswdEntry(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str


class GroupEntry(NamedTuple):
    name: str
    gid: int
    members: Tuple[str, ...]


class ExecUser(NamedTuple):
    """The identity a process gets: ids, supplementary groups, and the home for ``HOME``."""

    uid: int
    gid: int
    groups: Tuple[int, ...] = ()
    home: str = "/"


def parse_id(text: str, what: str = "id") -> int:
    """A uid or gid: plain decimal digits, at most 2**31-1 (no sign, no spaces, no hex)."""
    if not text or not text.isascii() or not text.isdigit():
        raise ContainerError(f"invalid {what} {text!r}: expected a decimal number from 0 to {MAX_ID}")
    if len(text) > 10 or int(text) > MAX_ID:
        raise ContainerError(f"{what} {text} is out of range: the largest allowed is {MAX_ID}")
    return int(text)


def _is_id(text: str) -> bool:
    return bool(text) and text.isascii() and text.isdigit()


def _lines(data: bytes) -> Iterable[List[str]]:
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8", "surrogateescape").rstrip("\r")
        if line and not line.startswith("#"):
            yield line.split(":")


def _number(text: str) -> Optional[int]:
    if not _is_id(text) or len(text) > 10 or int(text) > MAX_ID:
        return None
    return int(text)


def parse_passwd(data: bytes) -> List[PasswdEntry]:
    """Entries of a passwd file; malformed lines are skipped, as libc does."""
    entries = []
    for fields in _lines(data):
        if len(fields) < 4:
            continue
        uid, gid = _number(fields[2]), _number(fields[3])
        if uid is None or gid is None:
            continue
        home = fields[5] if len(fields) > 5 and fields[5] else "/"
        entries.append(PasswdEntry(fields[0], uid, gid, home))
    return entries


def parse_group(data: bytes) -> List[GroupEntry]:
    """Entries of a group file; malformed lines are skipped."""
    entries = []
    for fields in _lines(data):
        if len(fields) < 3:
            continue
        gid = _number(fields[2])
        if gid is None:
            continue
        members = tuple(name for name in fields[3].split(",") if name) if len(fields) > 3 else ()
        entries.append(GroupEntry(fields[0], gid, members))
    return entries


def read_bounded(path: str, limit: int = MAX_FILE_BYTES) -> Optional[bytes]:
    """Read a small regular file of the container, or ``None`` when it does not exist.

    Opened non-blocking so a FIFO planted at the path cannot stall the set-up,
    and refused when it is not a regular file or larger than *limit*.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ContainerError(f"cannot read {path} in the container: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ContainerError(f"{path} in the container is not a regular file")
        if info.st_size > limit:
            raise ContainerError(f"{path} in the container is larger than {limit} bytes; refusing to parse it")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise ContainerError(f"{path} in the container is larger than {limit} bytes; refusing to parse it")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _find_group(entries: Sequence[GroupEntry], spec: str) -> int:
    if _is_id(spec):
        return parse_id(spec, "gid")
    for entry in entries:
        if entry.name == spec:
            return entry.gid
    raise ContainerError(f"unable to find group {spec}: no matching entries in the container's /etc/group")


def resolve(
    spec: str,
    passwd: Optional[bytes],
    group: Optional[bytes],
    extra_groups: Sequence[str] = (),
) -> ExecUser:
    """Resolve Docker's ``User`` (``""``, ``name``, ``uid``, with an optional ``:group``/``:gid``).

    A numeric uid missing from passwd is allowed (gid 0, home ``/``), like
    Docker; a name missing from passwd is an error.  *extra_groups* are
    ``--group-add`` values (names or gids).
    """
    user_part, sep, group_part = spec.partition(":")
    if sep and not group_part:
        raise ContainerError(f"invalid user {spec!r}: the group after ':' is empty")
    users = parse_passwd(passwd or b"")
    groups = parse_group(group or b"")
    entry: Optional[PasswdEntry] = None
    if not user_part:
        uid = 0
        entry = next((item for item in users if item.uid == 0), None)
    elif _is_id(user_part):
        uid = parse_id(user_part, "uid")
        entry = next((item for item in users if item.uid == uid), None)
    else:
        entry = next((item for item in users if item.name == user_part), None)
        if entry is None:
            raise ContainerError(f"unable to find user {user_part}: no matching entries in the container's /etc/passwd")
        uid = entry.uid
    gid = entry.gid if entry is not None else 0
    if group_part:
        gid = _find_group(groups, group_part)
    supplementary: List[int] = []
    if entry is not None:
        supplementary = [item.gid for item in groups if entry.name in item.members]
    supplementary.extend(_find_group(groups, name) for name in extra_groups)
    unique = tuple(dict.fromkeys(supplementary))
    if len(unique) > MAX_GROUPS:
        raise ContainerError(f"user {spec!r} would have more than {MAX_GROUPS} supplementary groups")
    return ExecUser(uid=uid, gid=gid, groups=unique, home=entry.home if entry is not None else "/")


def resolve_in_container(spec: str, extra_groups: Sequence[str] = (), etc: str = "/etc") -> ExecUser:
    """Resolve *spec* against the passwd and group files under *etc* (after the switch of root)."""
    return resolve(
        spec,
        read_bounded(os.path.join(etc, "passwd")),
        read_bounded(os.path.join(etc, "group")),
        extra_groups,
    )
