"""User namespaces: the container's root is an unprivileged user of the host.

A container with ``userns`` other than ``host`` runs in a user namespace
that maps its ids 0..SIZE-1 to the host's HOST_UID.. and HOST_GID.. .  The
image layers, the container's own layer and its named volumes keep the
ids of the image on disk (uid 0 stays 0, so ``commit`` and the layer
store need no shifting): the set-up child covers them with *idmapped*
mounts of themselves (Linux 5.12+; overlayfs over idmapped layers needs
5.19+), through which on-disk root is the namespace's root.

The namespace is entered last, right before the command is executed: the
mount, pid, network, uts and ipc namespaces stay owned by the host's user
namespace, so even root in the container holds no capability over them
(no mounts, no hostname or network changes), and a bind-mounted host file
keeps its host owner (unmapped ids show as ``nobody``).

Values of the option: ``host`` (the default: no user namespace), ``auto``
(the subordinate ids of the user ``berth`` in /etc/subuid and /etc/subgid,
as Docker's ``userns-remap: default`` uses ``dockremap``), or
``HOST_UID[:HOST_GID[:SIZE]]`` (GID defaults to the UID, SIZE to 65536).
"""

import os
from typing import NamedTuple, Optional

from .errors import ContainerError, InvalidArgument

HOST = "host"
AUTO = "auto"
AUTO_USER = "berth"
DEFAULT_SIZE = 65536
MAX_ID = 2**32 - 2  # (uid_t) -1 is no id
SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"


class IdMap(NamedTuple):
    """Container ids 0..size-1 are host ids uid.. (users) and gid.. (groups)."""

    uid: int
    gid: int
    size: int

    def host_uid(self, container_uid: int) -> int:
        return self.uid + container_uid

    def host_gid(self, container_gid: int) -> int:
        return self.gid + container_gid

    @classmethod
    def of_process(cls, pid: int) -> "IdMap":
        """The map of the user namespace of process *pid*, from the lines for its root in /proc."""
        starts = []
        size = 0
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", encoding="ascii") as handle:
                for line in handle:
                    inside, outside, count = (int(part) for part in line.split())
                    if inside == 0:
                        starts.append(outside)
                        size = count
                        break
                else:
                    raise ContainerError(f"process {pid} has no root in its user namespace")
        return cls(starts[0], starts[1], size)


def normalize(value: object) -> str:
    """The canonical option value: ``host``, ``auto`` or ``UID:GID:SIZE``."""
    text = HOST if value in (None, "") else str(value).strip()
    if text in (HOST, AUTO):
        return text
    parts = text.split(":")
    if len(parts) > 3 or not all(part.isdigit() for part in parts):
        raise InvalidArgument(f"userns: {value!r} is not host, auto or HOST_UID[:HOST_GID[:SIZE]]")
    uid = int(parts[0])
    gid = int(parts[1]) if len(parts) > 1 else uid
    size = int(parts[2]) if len(parts) > 2 else DEFAULT_SIZE
    _check(IdMap(uid, gid, size), f"userns: {value!r}")
    return f"{uid}:{gid}:{size}"


def _check(idmap: IdMap, what: str) -> IdMap:
    if idmap.uid == 0 or idmap.gid == 0:
        raise InvalidArgument(f"{what} maps the container's root to the host's root: use userns host instead")
    if idmap.size < 1:
        raise InvalidArgument(f"{what}: the range must hold at least one id")
    if idmap.uid + idmap.size - 1 > MAX_ID or idmap.gid + idmap.size - 1 > MAX_ID:
        raise InvalidArgument(f"{what}: the range ends beyond the largest id {MAX_ID}")
    return idmap


def resolve(value: str, subuid_file: str = SUBUID_FILE, subgid_file: str = SUBGID_FILE) -> Optional[IdMap]:
    """The id map of a normalised option value (``None`` for ``host``)."""
    if value == HOST:
        return None
    if value == AUTO:
        uid = _subordinate_start(subuid_file)
        gid = _subordinate_start(subgid_file)
        return _check(IdMap(uid, gid, DEFAULT_SIZE), f"userns auto ({subuid_file}, {subgid_file})")
    uid, gid, size = (int(part) for part in normalize(value).split(":"))
    return IdMap(uid, gid, size)


def _subordinate_start(path: str) -> int:
    """The first id of the first range of at least 65536 ids that *path* gives the user ``berth``."""
    hint = (
        f'add a line "{AUTO_USER}:100000:{DEFAULT_SIZE}" to {SUBUID_FILE} and {SUBGID_FILE}, '
        "or give userns as HOST_UID:HOST_GID:SIZE"
    )
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise InvalidArgument(f"userns auto: {path} does not exist: {hint}") from None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] != AUTO_USER:
            continue
        if fields[1].isdigit() and fields[2].isdigit() and int(fields[2]) >= DEFAULT_SIZE:
            return int(fields[1])
    raise InvalidArgument(f'userns auto: {path} gives the user "{AUTO_USER}" no range of {DEFAULT_SIZE} ids: {hint}')


def create(idmap: IdMap) -> int:
    """A new user namespace with *idmap*; returns an open (close-on-exec) descriptor of it.

    A short-lived child creates the namespace, this (privileged) process
    writes its maps, and the namespace lives on through the descriptor.
    The caller must be single-threaded (it forks).
    """
    from . import libc

    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_read)
            os.close(done_write)
            libc.unshare(libc.CLONE_NEWUSER)
            os.write(ready_write, b"1")
            os.read(done_read, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_write)
    os.close(done_read)
    try:
        if os.read(ready_read, 1) != b"1":
            raise ContainerError("cannot create a user namespace (is user.max_user_namespaces 0?)")
        for name, start in (("uid_map", idmap.uid), ("gid_map", idmap.gid)):
            with open(f"/proc/{pid}/{name}", "w", encoding="ascii") as handle:
                handle.write(f"0 {start} {idmap.size}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ContainerError(f"cannot set up the user namespace {idmap.uid}:{idmap.gid}:{idmap.size}: {exc}") from None
    finally:
        os.close(ready_read)
        os.close(done_write)
        os.waitpid(pid, 0)


def status() -> str:
    """What ``berth info`` says of ``--userns auto`` on this host."""
    try:
        idmap = resolve(AUTO, SUBUID_FILE, SUBGID_FILE)
    except InvalidArgument:
        return f'auto unavailable (no "{AUTO_USER}" range of {DEFAULT_SIZE} ids in {SUBUID_FILE} and {SUBGID_FILE})'
    return f"auto maps root to {idmap.uid}:{idmap.gid} ({idmap.size} ids, from {SUBUID_FILE} and {SUBGID_FILE})"


def is_own(pid: int) -> bool:
    """Whether process *pid* is in the caller's user namespace."""
    return os.stat(f"/proc/{pid}/ns/user").st_ino == os.stat("/proc/self/ns/user").st_ino
