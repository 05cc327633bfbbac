"""A container's overlay upper directory as an OCI layer tar (the write side of ``commit``).

The container's rootfs is mounted with ``index=off,redirect_dir=off,metacopy=off``,
so its ``upper/`` directory *is* the diff against the image: every changed
or new path is there in full, deletions are overlay whiteouts.  This module
turns that into a changeset tar, following moby's ``overlayWhiteoutConverter``:

* a character device 0:0 becomes an empty regular file ``.wh.NAME`` (mode
  0600, owner and mtime of the device) — checked before hardlinks, because
  the kernel shares one whiteout inode between many names;
* a directory with ``trusted.overlay.opaque=y`` is written, followed at once
  by ``DIR/.wh..wh..opq`` (mode, owner and mtime of the directory);
* ``trusted.overlay.*`` xattrs (``origin``, ``impure``... written by copy-up)
  are not copied; ``redirect`` or ``metacopy`` mean the mount was not made the
  way Berth makes it, and the diff would be wrong: refused with an error;
* hardlinks: the first path (in walk order) of an inode is the file, later
  ones are ``LNKTYPE`` entries naming it;
* sockets are skipped (tar cannot hold them); ``security.selinux`` is a
  host label and not copied; a version 3 ``security.capability`` (with a
  user-namespace root id) is written as version 2, like moby.

The tar is deterministic: entries sorted by their byte names, parents before
children; PAX format; numeric ids, no user or group names; mtimes truncated
to whole seconds and no atime/ctime (moby's normalisation); the archive ends
with two zero blocks and no record padding, like Go's ``archive/tar``, so an
empty diff hashes to Docker's empty-layer diff_id.
"""

import os
import stat
import tarfile
from dataclasses import asdict, dataclass
from typing import BinaryIO, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

from . import layerfs
from .compression import CHUNK, GZIP, LayerWriter
from .errors import LayerError

BLOCK = 512
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
OPAQUE_MARKER = ".wh..wh..opq"
WHITEOUT_PREFIX = ".wh."
_OVERLAY_PREFIXES = ("trusted.overlay.", "user.overlay.")
_FORBIDDEN_OVERLAY = ("redirect", "metacopy")
_SKIPPED_XATTRS = ("security.selinux",)
_CAPABILITY = "security.capability"
_VFS_CAP_REVISION_MASK = 0xFF000000
_VFS_CAP_REVISION_2 = 0x02000000
_VFS_CAP_REVISION_3 = 0x03000000
_VFS_CAP_V2_SIZE = 20
_O_NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass
class DiffStats:
    """What the diff contained."""

    entries: int = 0
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    devices: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0
    skipped_sockets: int = 0
    data_bytes: int = 0
    tar_bytes: int = 0

    @property
    def empty(self) -> bool:
        return self.entries == 0

    def as_dict(self) -> Dict[str, object]:
        result: Dict[str, object] = dict(asdict(self))
        result["empty"] = self.empty
        return result


@dataclass
class LayerBlob:
    """A committed layer: where it went and the digests the image config and manifest need."""

    diff_id: str
    digest: str
    size: int
    media_type: str
    stats: DiffStats


class _Entry:
    __slots__ = ("name", "parent", "relpath", "st")

    def __init__(self, parent: str, name: str, st: os.stat_result) -> None:
        self.parent = parent
        self.name = name
        self.relpath = f"{parent}/{name}" if parent else name
        self.st = st


class _UpperWalker:
    """Sorted pre-order walk of a directory tree by fds, never following a symlink."""

    def __init__(self, upper: str, exclude: Iterable[str]) -> None:
        try:
            self.root_fd = os.open(upper, layerfs.DIR_FLAGS)
        except OSError as exc:
            raise LayerError(f"cannot open the container's upper directory {upper}: {exc.strerror}") from None
        self.upper = upper
        self.dirs = layerfs.DirCache(self.root_fd)
        self.exclude: Set[str] = {_clean(path) for path in exclude}

    def entries(self) -> Iterator[_Entry]:
        stack: List[Tuple[str, List[str]]] = [("", self._children(""))]
        while stack:
            parent, names = stack[-1]
            if not names:
                stack.pop()
                continue
            name = names.pop()
            relpath = f"{parent}/{name}" if parent else name
            if relpath in self.exclude:
                continue
            st = layerfs.lstat_at(self.dir_fd(parent), name)
            if st is None:
                raise LayerError(f"{relpath!r} vanished from {self.upper} while it was read (is the container paused?)")
            entry = _Entry(parent, name, st)
            yield entry
            if stat.S_ISDIR(st.st_mode):
                stack.append((relpath, self._children(relpath)))

    def _children(self, relpath: str) -> List[str]:
        """Names in *relpath*, reverse-sorted by bytes so that ``pop()`` yields them in order."""
        with os.scandir(self.dir_fd(relpath)) as found:
            names = [entry.name for entry in found]
        names.sort(key=os.fsencode, reverse=True)
        return names

    def dir_fd(self, relpath: str) -> int:
        try:
            return self.dirs.get(relpath)
        except layerfs.NotADirectoryComponent as blocked:
            raise LayerError(f"{blocked.relpath!r} in {self.upper} changed while it was read") from None

    def close(self) -> None:
        self.dirs.close()
        os.close(self.root_fd)


def _clean(path: str) -> str:
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _TarWriter:
    def __init__(self, out: BinaryIO, stats: DiffStats) -> None:
        self.out = out
        self.stats = stats

    def header(self, info: tarfile.TarInfo) -> None:
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.stats.entries += 1

    def data(self, fd: int, size: int, relpath: str) -> None:
        remaining = size
        while remaining:
            chunk = os.read(fd, min(CHUNK, remaining))
            if not chunk:
                raise LayerError(f"{relpath!r} shrank while it was committed (is the container paused?)")
            self._write(chunk)
            remaining -= len(chunk)
        self.stats.data_bytes += size
        if size % BLOCK:
            self._write(b"\0" * (BLOCK - size % BLOCK))

    def end(self) -> None:
        self._write(b"\0" * (2 * BLOCK))

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.stats.tar_bytes += len(data)


def _xattrs(target: Union[int, str], relpath: str, is_dir: bool) -> Tuple[Dict[str, str], bool]:
    """PAX records of the xattrs worth keeping, and whether the directory is opaque."""
    records: Dict[str, str] = {}
    opaque = False
    for name, value in layerfs.iter_xattrs(target):
        if name.startswith(_OVERLAY_PREFIXES):
            suffix = name.split(".", 2)[2]
            if suffix in _FORBIDDEN_OVERLAY:
                raise LayerError(
                    f"{relpath!r} carries the overlay xattr {name}: the container's rootfs was mounted with "
                    "redirect_dir or metacopy, so its upper directory is not a complete diff; commit refused"
                )
            if is_dir and suffix == "opaque" and value == b"y":
                opaque = True
            continue
        if name in _SKIPPED_XATTRS:
            continue
        kept = _capability_v2(value) if name == _CAPABILITY else value
        records["SCHILY.xattr." + name] = kept.decode("utf-8", "surrogateescape")
    return records, opaque


def _capability_v2(value: bytes) -> bytes:
    """A v3 file capability (with a namespace root id) as the v2 layout, which means the same outside it."""
    if len(value) >= 4:
        magic = int.from_bytes(value[:4], "little")
        if magic & _VFS_CAP_REVISION_MASK == _VFS_CAP_REVISION_3:
            magic = (magic & ~_VFS_CAP_REVISION_MASK) | _VFS_CAP_REVISION_2
            return magic.to_bytes(4, "little") + value[4:_VFS_CAP_V2_SIZE]
    return value


def _base_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.uname = ""
    info.gname = ""
    info.mtime = int(st.st_mtime_ns // 1_000_000_000)
    info.size = 0
    return info


def write_layer_tar(upper: str, out: BinaryIO, exclude: Iterable[str] = ()) -> DiffStats:
    """Write the OCI changeset tar of the overlay upper directory *upper* to *out*.

    *exclude* lists relative paths (with their subtrees) to leave out, such
    as mount points the runtime itself created.  The container should be
    paused (frozen) meanwhile; a file that changes under the walk is an error.
    """
    stats = DiffStats()
    walker = _UpperWalker(upper, exclude)
    writer = _TarWriter(out, stats)
    seen_inodes: Dict[Tuple[int, int], str] = {}
    try:
        for entry in walker.entries():
            _write_entry(walker, writer, entry, seen_inodes, stats)
        writer.end()
    except OSError as exc:
        raise LayerError(f"cannot read {upper}: {exc}") from None
    finally:
        walker.close()
    return stats


def _write_entry(
    walker: _UpperWalker,
    writer: _TarWriter,
    entry: _Entry,
    seen_inodes: Dict[Tuple[int, int], str],
    stats: DiffStats,
) -> None:
    st = entry.st
    parent_fd = walker.dir_fd(entry.parent)
    mode = st.st_mode
    if stat.S_ISSOCK(mode):
        stats.skipped_sockets += 1
        return
    if _is_whiteout(st):
        info = _base_info(_join(entry.parent, WHITEOUT_PREFIX + entry.name), st)
        info.mode = 0o600
        info.type = tarfile.REGTYPE
        writer.header(info)
        stats.whiteouts += 1
        return
    if stat.S_ISDIR(mode):
        fd = walker.dir_fd(entry.relpath)
        records, opaque = _xattrs(fd, entry.relpath, is_dir=True)
        info = _base_info(entry.relpath + "/", st)
        info.type = tarfile.DIRTYPE
        info.pax_headers = records
        writer.header(info)
        stats.directories += 1
        if opaque:
            marker = _base_info(f"{entry.relpath}/{OPAQUE_MARKER}", st)
            marker.mode = stat.S_IMODE(mode) & 0o777
            marker.type = tarfile.REGTYPE
            writer.header(marker)
            stats.opaque_dirs += 1
        return
    info = _base_info(entry.relpath, st)
    if st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        first = seen_inodes.get(key)
        if first is not None:
            info.type = tarfile.LNKTYPE
            info.linkname = first
            writer.header(info)
            stats.hardlinks += 1
            return
        seen_inodes[key] = entry.relpath
    records = _xattrs(layerfs.proc_path(parent_fd, entry.name), entry.relpath, is_dir=False)[0]
    info.pax_headers = records
    if stat.S_ISREG(mode):
        _write_file(writer, parent_fd, entry, info)
        stats.files += 1
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry.name, dir_fd=parent_fd)
        writer.header(info)
        stats.symlinks += 1
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        info.type = (
            tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE if stat.S_ISBLK(mode) else tarfile.FIFOTYPE
        )
        if not stat.S_ISFIFO(mode):
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
        writer.header(info)
        stats.devices += 1
    else:
        raise LayerError(f"{entry.relpath!r} has a file type tar cannot hold ({stat.filemode(mode)})")


def _write_file(writer: _TarWriter, parent_fd: int, entry: _Entry, info: tarfile.TarInfo) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(entry.name, flags | _O_NOATIME, dir_fd=parent_fd)
    except PermissionError:
        fd = os.open(entry.name, flags, dir_fd=parent_fd)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (entry.st.st_dev, entry.st.st_ino):
            raise LayerError(f"{entry.relpath!r} was replaced while it was committed (is the container paused?)")
        info.type = tarfile.REGTYPE
        info.size = entry.st.st_size
        writer.header(info)
        writer.data(fd, entry.st.st_size, entry.relpath)
    finally:
        os.close(fd)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def diff_is_empty(upper: str, exclude: Iterable[str] = ()) -> bool:
    """True when the upper directory holds no change (after *exclude*): commit would add no layer."""
    walker = _UpperWalker(upper, exclude)
    try:
        return all(stat.S_ISSOCK(entry.st.st_mode) for entry in walker.entries())
    finally:
        walker.close()


def write_layer_blob(
    upper: str,
    out: BinaryIO,
    compression: str = GZIP,
    exclude: Iterable[str] = (),
    level: Optional[int] = None,
) -> LayerBlob:
    """Write the compressed layer of *upper* to *out*, hashing tar and blob in one pass.

    The result names the diff_id (for the config's ``rootfs.diff_ids``; for an
    empty diff it equals :data:`EMPTY_LAYER_DIFF_ID` and callers add an
    ``empty_layer`` history entry instead) and the blob digest, size and media
    type (for the manifest).
    """
    writer = LayerWriter(out, compression, level)
    stats = write_layer_tar(upper, writer, exclude)  # type: ignore[arg-type]
    writer.close()
    return LayerBlob(writer.diff_id, writer.digest, writer.size, writer.media_type, stats)
