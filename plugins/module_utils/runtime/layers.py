"""Safe application of one image layer (an OCI changeset tar) into its own directory.

Storage model: every layer is applied into an empty directory of its own, in
overlayfs form, so layers can be unpacked independently and stacked as
overlay lowerdirs later:

* ``DIR/.wh.NAME`` becomes a character device 0:0 named ``NAME`` (mode 0000,
  owned like the whiteout entry), ``DIR/.wh..wh..opq`` the xattr
  ``trusted.overlay.opaque=y`` on ``DIR`` whatever its position in the tar.
  A whiteout never hides an entry of its own layer: a whiteout and an entry of
  the same name make the entry win, and when that entry is a directory it is
  made opaque (the lower one was deleted, a new one created).  Whiteouts below
  a directory that is opaque in the same layer are dropped: the kernel would
  list them in ``readdir`` as ghost entries (measured on 6.18).
* Directories implied by an entry (``a/b/f`` without ``a/``) take mode, owner,
  xattrs and mtime from the same directory in the parent layers (top-most
  first, stopping at a whiteout, non-directory or opaque directory), like
  containerd's ``mkparent``; else ``0755 root:root`` like moby.  The layer
  root itself is such an implied directory unless the tar has a ``./`` entry.
* ``trusted.overlay.*`` and ``user.overlay.*`` xattrs in a tar are dropped, so
  an image cannot smuggle overlay metadata (redirects, metacopy, opaque)
  into the merged view.

Decisions on hostile input (each is tested by the hostile-layer corpus):

* Names are cleaned lexically (``path.Clean``): a leading ``/`` and ``.``
  components are dropped, ``a/../b`` is ``b``; a name that climbs above the
  root is refused, as are NUL bytes, components longer than 255 bytes and
  names longer than ``max_path`` bytes.  A name used twice is refused (the OCI
  layer spec forbids duplicates).  An entry for the root itself must be a
  directory (umoci CVE-2021-29136).
* **Symlinks in the middle of a path are refused, never followed.**  Every
  directory is opened from the layer root one component at a time with
  ``O_NOFOLLOW|O_DIRECTORY`` (``openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)``
  where available); a symlink or file where a directory is needed is a
  :class:`LayerError`.  Honest layers come from filesystem walks, which cannot
  list a path below a symlink, so only crafted archives are refused.  Final
  components are always created or changed with ``dir_fd`` and
  ``follow_symlinks=False``, regular files with ``O_CREAT|O_EXCL|O_NOFOLLOW``
  after removing what was there (so a hardlinked inode is never truncated).
* Symlink targets are stored verbatim: ``/usr/lib`` is legitimate, and no
  target is ever resolved here.
* Hardlinks must point to a non-directory created earlier *in this tar*;
  ``link()`` is called with ``follow_symlinks=False`` (a link to a symlink
  links the symlink, CVE-2021-32760).  Their header attributes are not applied
  (they would be the target inode's).
* Devices are created (or skipped and counted with ``allow_devices=False``),
  FIFOs always, sockets do not exist in tar; sparse files, unknown entry types
  and PAX global headers' records (ignored, like moby) are handled explicitly.
* Ownership, then mode (``chown`` clears setuid), then xattrs (``chown`` also
  clears ``security.capability``), then times; directories' times at the end.
  Modes are set explicitly after creation, so the process umask (shared with
  other threads) does not matter.  xattrs are best effort on ``ENOTSUP`` /
  ``EPERM`` (counted), except ``security.capability``, whose loss would break
  binaries such as ``ping`` silently: failing to set it is an error.
* Caps: ``max_entries``, ``max_bytes`` (file data), ``max_path``; PAX and GNU
  long-name headers are capped at 1 MiB and 16 in a row (as Go's
  ``archive/tar``), so a hostile header cannot exhaust memory or recursion.
* One ``syncfs`` of the layer's filesystem at the end, no per-file fsync.

``tarfile`` is used only as a parser, reading the stream once and forward
only (through :class:`tarstream.TarSource`, which spares the copies of its
``r|`` stream buffer); nothing here calls its ``extract*`` functions, whose
filters have been bypassed repeatedly (CVE-2007-4559 and successors).

Speed (measured with perf on Debian's 6,660-entry base layer, issue 3): one
thread parses, creates and writes; the kernel's work per entry and ``unpigz``
run alongside.  Handing file data and attributes to writer threads was
10-30% slower (GIL hand-overs at every syscall), so there are none; a pull
overlaps the next layer instead (``parents_ready``).

Isolation, decided with ``bench/layers/unpack.py``: the applier runs in the
caller's process, not in a child chrooted into the layer (moby's
chrootarchive).  Containment is enforced by the kernel at every lookup
already, and the hostile corpus checks it with and without ``openat2``.  A
chroot child would be a second wall against bugs here only, for 2-12 ms per
layer (fork + unshare + chroot, measured), while forking the store's
threaded pull is unsafe in CPython (locks held by other threads, OpenSSL's
in hashlib among them) and a chroot has no ``/proc``, which the ``O_PATH``
chmod and the xattr calls on symlinks and devices use.  The decompressors,
the C code that parses untrusted bytes first, run in their own process as
``nobody``.  Two layers unpack faster in two processes than in two threads
(measured); :func:`apply_compressed` takes and returns picklable values, so
a caller can use a process pool.
"""

import errno
import os
import stat
import tarfile
from dataclasses import asdict, dataclass
from typing import BinaryIO, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

from . import layerfs
from .compression import CHUNK, HashingReader, open_decompressed
from .errors import LayerError
from .tarstream import TarSource

DEFAULT_MAX_ENTRIES = 1_000_000
DEFAULT_MAX_BYTES = 64 << 30
DEFAULT_MAX_PATH = 4096
MAX_SPECIAL_HEADER = 1 << 20
MAX_HEADER_CHAIN = 16
NAME_MAX = 255
SYMLINK_MAX = 4095

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
AUFS_META_PREFIX = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"
DROPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
CAPABILITY_XATTR = "security.capability"
IMPLIED_DIR_MODE = 0o755

_META_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_XGLTYPE = tarfile.XGLTYPE
_MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "leave unchanged" to chown
_SKIPPED = "skipped"  # a device not created (allow_devices=False); links to it are skipped too


@dataclass
class LayerStats:
    """What applying one layer did."""

    entries: int = 0
    bytes_written: int = 0
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    devices: int = 0
    fifos: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0
    skipped_devices: int = 0
    skipped_entries: int = 0
    skipped_xattrs: int = 0

    def as_dict(self) -> Dict[str, int]:
        return asdict(self)


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile's header parser with errors instead of silent truncation, and caps.

    tarfile ends an archive quietly at a corrupt header after the first one;
    Go's archive/tar (what Docker uses) reports it, and so do we.  PAX global
    headers are skipped without applying their records, as moby does.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.InvalidHeaderError as exc:
            raise LayerError(f"the layer is not a valid tar archive: {exc}") from None
        except tarfile.TruncatedHeaderError:
            raise LayerError("the layer's tar stream ends inside a header (truncated)") from None

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        """Check extended headers before tarfile reads them; the parameter name is tarfile's own."""
        if self.type in _META_TYPES:
            if self.size > MAX_SPECIAL_HEADER:
                raise LayerError(
                    f"the layer has an extended tar header of {self.size} bytes (the limit is {MAX_SPECIAL_HEADER})"
                )
            chain = getattr(tarfile, "_berth_header_chain", 0) + 1
            if chain > MAX_HEADER_CHAIN:
                raise LayerError(f"the layer has more than {MAX_HEADER_CHAIN} extended tar headers in a row")
            tarfile._berth_header_chain = chain  # type: ignore[attr-defined]
            if self.type == _XGLTYPE:
                tarfile.fileobj.read(self._block(self.size))  # type: ignore[union-attr]
                return self.fromtarfile(tarfile)
        else:
            tarfile._berth_header_chain = 0  # type: ignore[attr-defined]
        return super()._proc_member(tarfile)  # type: ignore[misc]


def shown(name: str, limit: int = 120) -> str:
    """*name* quoted for a message, shortened in the middle when a hostile layer made it huge."""
    if len(name) > limit:
        name = name[: limit // 2] + "..." + name[-limit // 3 :]
    return repr(name)


def clean_name(name: str) -> str:
    """The lexically cleaned relative form of a tar member name; "" is the layer root."""
    if "\x00" in name:
        raise LayerError(f"layer entry {shown(name)} has a NUL byte in its name")
    parts: List[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise LayerError(f"layer entry {shown(name)} points outside the layer (refusing '..' above its root)")
            parts.pop()
            continue
        if len(os.fsencode(part)) > NAME_MAX:
            raise LayerError(f"layer entry {shown(name)} has a path component longer than {NAME_MAX} bytes")
        parts.append(part)
    return "/".join(parts)


def _split(relpath: str) -> Tuple[str, str]:
    parent, _slash, base = relpath.rpartition("/")
    return parent, base


def _parse_time_ns(value: Union[str, int, float]) -> int:
    """Nanoseconds of a tar time: exact for PAX decimal strings (floats lose nanoseconds)."""
    if isinstance(value, str):
        text = value.strip()
        negative = text.startswith("-")
        if negative:
            text = text[1:]
        whole, _dot, fraction = text.partition(".")
        if not whole.isdigit() or (fraction and not fraction.isdigit()):
            raise ValueError(value)
        ns = int(whole) * 1_000_000_000 + int((fraction + "000000000")[:9])
        return -ns if negative else ns
    return int(value * 1_000_000_000) if isinstance(value, float) else int(value) * 1_000_000_000


class _LowerLayers:
    """Read-only view of the parent layers' directories, for implied parents."""

    def __init__(self, parents: Sequence[str]) -> None:
        self.fds: List[int] = []
        try:
            for parent in parents:
                self.fds.append(os.open(parent, layerfs.DIR_FLAGS))
        except OSError as exc:
            self.close()
            raise LayerError(f"cannot open parent layer directory {exc.filename}: {exc.strerror}") from None

    def dir_attrs(self, relpath: str) -> Optional[Tuple[os.stat_result, List[Tuple[str, bytes]]]]:
        """Stat and xattrs of *relpath* as the stack of parent layers shows it, if a directory."""
        parts = relpath.split("/") if relpath else []
        for top in self.fds:
            found, hidden_below = self._lookup(top, parts)
            if found is not None:
                return found
            if hidden_below:
                return None
        return None

    @staticmethod
    def _lookup(top: int, parts: List[str]) -> Tuple[Optional[Tuple[os.stat_result, List[Tuple[str, bytes]]]], bool]:
        """(attrs if this layer has the directory, whether this layer hides lower ones)."""
        opened: List[int] = []
        current = top
        try:
            if not parts:
                return (os.fstat(top), _copyable_xattrs(top)), True
            for index, part in enumerate(parts):
                st = layerfs.lstat_at(current, part)
                if st is None:
                    return None, False
                if not stat.S_ISDIR(st.st_mode):
                    return None, True
                fd = os.open(part, layerfs.DIR_FLAGS, dir_fd=current)
                opened.append(fd)
                current = fd
                if index == len(parts) - 1:
                    return (st, _copyable_xattrs(fd)), True
                if _is_opaque(fd):
                    return None, True
            return None, False
        except OSError:
            return None, True
        finally:
            for fd in opened:
                os.close(fd)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _implied_owner() -> Tuple[int, int]:
    """root:root, or the caller when it is not root (it could not chown to root anyway)."""
    if os.geteuid() == 0:
        return 0, 0
    return os.geteuid(), os.getegid()


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError:
        return False


def _copyable_xattrs(fd: int) -> List[Tuple[str, bytes]]:
    return [(name, value) for name, value in layerfs.iter_xattrs(fd) if not name.startswith(DROPPED_XATTR_PREFIXES)]


def _entry_xattrs(member: tarfile.TarInfo) -> List[Tuple[str, bytes]]:
    """The xattrs a tar member carries (SCHILY.xattr.*, LIBARCHIVE.xattr.*), overlay ones dropped."""
    found: List[Tuple[str, bytes]] = []
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr.") :]
            data = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            import base64
            from urllib.parse import unquote

            name = unquote(key[len("LIBARCHIVE.xattr.") :])
            try:
                data = base64.b64decode(value + "=" * (-len(value) % 4))
            except ValueError:
                raise LayerError(f"layer entry {shown(member.name)}: xattr {shown(name)} is not valid base64") from None
        else:
            continue
        if not name or "\x00" in name:
            raise LayerError(f"layer entry {shown(member.name)} has an xattr with an invalid name {shown(name)}")
        if name.startswith(DROPPED_XATTR_PREFIXES):
            continue
        found.append((name, data))
    return sorted(found)


class _Applier:
    def __init__(
        self,
        dest: str,
        parents: Sequence[str],
        *,
        allow_devices: bool,
        max_entries: int,
        max_bytes: int,
        max_path: int,
        use_openat2: Optional[bool],
        parents_ready: Optional[Callable[[], None]] = None,
    ) -> None:
        self.parents = parents
        self.parents_ready = parents_ready
        # Implied directories whose attributes wait for the parent layers (``parents_ready``), in order.
        self.pending_implied: Dict[str, None] = {}
        self.lower = _LowerLayers(parents) if parents_ready is None else None
        try:
            self.root_fd = os.open(dest, layerfs.DIR_FLAGS)
        except OSError as exc:
            if self.lower is not None:
                self.lower.close()
            raise LayerError(f"cannot open layer directory {dest}: {exc.strerror}") from None
        self.dest = dest
        self.dirs = layerfs.DirCache(self.root_fd, use_openat2)
        self.allow_devices = allow_devices
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_path = max_path
        self.stats = LayerStats()
        self.seen: Set[str] = set()
        # Paths this tar created, "d" for directories (explicit or implied), "f" otherwise.
        self.created: Dict[str, str] = {}
        self.whiteouts: Set[str] = set()
        self.opaque: Set[str] = set()
        self.dir_times: Dict[str, Tuple[int, int]] = {}
        self.implied_xattrs: Dict[str, Set[str]] = {}

    # --- driver ---------------------------------------------------------------

    def run(self, stream: BinaryIO) -> LayerStats:
        try:
            self._implied_attrs(self.root_fd, "")
            tar = self._open_tar(stream)
            if tar is not None:
                try:
                    self._apply_all(tar)
                finally:
                    tar.close()
            self._resolve_implied()
            self._finish()
            return self.stats
        finally:
            self.dirs.close()
            if self.lower is not None:
                self.lower.close()
            os.close(self.root_fd)

    def _resolve_implied(self) -> None:
        """Give the implied directories their parent layers' attributes, once those layers are complete."""
        if self.parents_ready is None:
            return
        self.parents_ready()
        self.parents_ready = None
        self.lower = _LowerLayers(self.parents)
        for relpath in self.pending_implied:
            fd = self._existing_dir(relpath)
            if fd is not None:
                self._implied_attrs(fd, relpath)
        self.pending_implied.clear()

    @staticmethod
    def _open_tar(stream: BinaryIO) -> Optional[tarfile.TarFile]:
        """A tarfile parser over *stream*, read once and forward only (see :mod:`tarstream`)."""
        try:
            return tarfile.TarFile(fileobj=TarSource(stream, CHUNK), mode="r", tarinfo=_StrictTarInfo)  # type: ignore[arg-type]
        except tarfile.ReadError as exc:
            if str(exc) == "empty file":
                return None  # a zero-byte layer is an empty layer (Go's reader agrees)
            raise LayerError(f"the layer is not a tar archive: {exc}") from None

    def _apply_all(self, tar: tarfile.TarFile) -> None:
        while True:
            try:
                member = tar.next()
            except tarfile.TarError as exc:
                raise LayerError(f"the layer is not a valid tar archive: {exc}") from None
            except RecursionError:
                raise LayerError("the layer's tar headers nest too deeply") from None
            if member is None:
                return
            tar.members.clear()  # tarfile would otherwise keep every header in memory
            self.stats.entries += 1
            if self.stats.entries > self.max_entries:
                raise LayerError(f"the layer has more than {self.max_entries} entries")
            try:
                self._apply(tar, member)
            except layerfs.NotADirectoryComponent as blocked:
                # A directory this entry just made was replaced under us (a racing process).
                raise LayerError(
                    f"layer entry {shown(member.name)}: {shown(blocked.relpath)} became {blocked.kind} "
                    "while the layer was applied; refusing to follow it"
                ) from None
            except OSError as exc:
                raise LayerError(f"layer entry {shown(member.name)}: {exc.strerror or exc}") from None
            except (ValueError, OverflowError) as exc:
                raise LayerError(f"layer entry {shown(member.name)} is invalid: {exc}") from None

    def _apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        if len(os.fsencode(member.name)) > self.max_path:
            raise LayerError(f"layer entry {shown(member.name)} has a name longer than {self.max_path} bytes")
        name = clean_name(member.name)
        if name in self.seen:
            raise LayerError(
                f"layer entry {shown(member.name)} appears twice in the layer (duplicates are not allowed)"
            )
        self.seen.add(name)
        parent, base = _split(name)
        if any(part.startswith(WHITEOUT_PREFIX) for part in parent.split("/")):
            if any(part.startswith(AUFS_META_PREFIX) for part in parent.split("/")):
                self.stats.skipped_entries += 1  # legacy AUFS metadata (.wh..wh.plnk/...)
                return
            raise LayerError(f"layer entry {shown(member.name)} uses a whiteout name as a directory")
        if base.startswith(AUFS_META_PREFIX):
            if base == OPAQUE_MARKER:
                self._opaque(parent)
            else:
                self.stats.skipped_entries += 1
            return
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base[len(WHITEOUT_PREFIX) :], member)
            return
        if not name and member.type != tarfile.DIRTYPE:
            raise LayerError(f"layer entry {shown(member.name)} would replace the layer root with a non-directory")
        kind = member.type
        if kind == tarfile.DIRTYPE:
            self._directory(name, member)
        elif kind in _FILE_TYPES:
            if member.issparse():
                raise LayerError(f"layer entry {shown(member.name)} is a sparse file (not allowed in image layers)")
            self._file(tar, name, member)
        elif kind == tarfile.SYMTYPE:
            self._symlink(name, member)
        elif kind == tarfile.LNKTYPE:
            self._hardlink(name, member)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            if self.allow_devices:
                self._node(name, member, stat.S_IFCHR if kind == tarfile.CHRTYPE else stat.S_IFBLK)
            else:
                self.created[name] = _SKIPPED
                self.stats.skipped_devices += 1
        elif kind == tarfile.FIFOTYPE:
            self._node(name, member, stat.S_IFIFO)
        else:
            raise LayerError(f"layer entry {shown(member.name)} has an unsupported tar type {kind!r}")

    # --- directories and the path walk -----------------------------------------

    def _parent_fd(self, parent: str, create: bool = True) -> int:
        """fd of directory *parent*, creating implied directories; never follows a symlink."""
        for _attempt in range(parent.count("/") + 2):
            try:
                return self.dirs.get(parent, self._make_implied if create else None)
            except layerfs.NotADirectoryComponent as blocked:
                if create and blocked.relpath in self.whiteouts:
                    self._replace_whiteout_with_dir(blocked.relpath)
                    continue
                raise LayerError(
                    f"cannot write below {shown(blocked.relpath)}: it is {blocked.kind} in this layer, "
                    "and paths through symlinks or files are refused"
                ) from None
            except FileNotFoundError:
                raise LayerError(f"directory {shown(parent)} does not exist in this layer") from None
        raise LayerError(f"cannot create the directories of {shown(parent)}")

    def _replace_whiteout_with_dir(self, relpath: str) -> None:
        """``.wh.X`` followed by ``X/...``: the lower X was deleted, so X is a new, opaque directory."""
        parent_fd = self._parent_fd(_split(relpath)[0])
        os.unlink(_split(relpath)[1], dir_fd=parent_fd)
        self.whiteouts.discard(relpath)
        self.stats.whiteouts -= 1
        os.mkdir(_split(relpath)[1], 0o700, dir_fd=parent_fd)
        self.created[relpath] = "d"
        self.opaque.add(relpath)
        fd = self.dirs.get(relpath)
        os.fchown(fd, *_implied_owner())
        os.fchmod(fd, IMPLIED_DIR_MODE)

    def _make_implied(self, parent_fd: int, base: str, relpath: str) -> None:
        os.mkdir(base, 0o700, dir_fd=parent_fd)
        self.created[relpath] = "d"
        fd = os.open(base, layerfs.DIR_FLAGS, dir_fd=parent_fd)
        try:
            self._implied_attrs(fd, relpath)
        finally:
            os.close(fd)

    def _implied_attrs(self, fd: int, relpath: str) -> None:
        if self.lower is None:
            self.pending_implied[relpath] = None  # 0700 and the caller's until _resolve_implied
            return
        lower = self.lower.dir_attrs(relpath)
        if lower is None:
            os.fchown(fd, *_implied_owner())
            os.fchmod(fd, IMPLIED_DIR_MODE)
            return
        st, xattrs = lower
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        copied = set()
        for name, value in xattrs:
            if self._set_xattr(fd, relpath, name, value):
                copied.add(name)
        if copied:
            self.implied_xattrs[relpath] = copied
        self.dir_times.setdefault(relpath, (st.st_atime_ns, st.st_mtime_ns))

    def _directory(self, name: str, member: tarfile.TarInfo) -> None:
        parent, base = _split(name)
        if name:
            parent_fd = self._parent_fd(parent)
            existing = layerfs.lstat_at(parent_fd, base)
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                replaced_whiteout = self._remove_existing(parent_fd, name, existing)
                os.mkdir(base, 0o700, dir_fd=parent_fd)
                if replaced_whiteout:
                    self.opaque.add(name)
            self.created[name] = "d"
            fd = self.dirs.get(name)
        else:
            fd = self.root_fd
        xattrs = _entry_xattrs(member)
        self.pending_implied.pop(name, None)
        self._owner_mode(fd, name, member)
        for stale in self.implied_xattrs.pop(name, set()) - {key for key, _value in xattrs}:
            try:
                os.removexattr(fd, stale)
            except OSError:
                pass
        for key, value in xattrs:
            self._set_xattr(fd, name, key, value)
        self.dir_times[name] = self._times(member)
        self.stats.directories += 1

    # --- other entry kinds -----------------------------------------------------

    def _prepare(self, name: str) -> Tuple[int, str]:
        """Parent fd and base name of a non-directory entry, with the old occupant removed."""
        parent, base = _split(name)
        parent_fd = self._parent_fd(parent)
        existing = layerfs.lstat_at(parent_fd, base)
        if existing is not None:
            self._remove_existing(parent_fd, name, existing)
        return parent_fd, base

    def _remove_existing(self, parent_fd: int, name: str, existing: Optional[os.stat_result]) -> bool:
        """Remove what is at *name*; True if it was a whiteout of this layer."""
        if existing is None:
            return False
        base = _split(name)[1]
        if stat.S_ISDIR(existing.st_mode):
            self.dirs.forget(name)
            below = name + "/"
            for relpath in [key for key in self.pending_implied if key == name or key.startswith(below)]:
                del self.pending_implied[relpath]
        layerfs.remove_at(parent_fd, base, existing)
        if name in self.whiteouts:
            self.whiteouts.discard(name)
            self.stats.whiteouts -= 1
            return True
        return False

    def _file(self, tar: tarfile.TarFile, name: str, member: tarfile.TarInfo) -> None:
        size = member.size
        if size < 0 or size > self.max_bytes - self.stats.bytes_written:
            raise LayerError(
                f"layer entry {shown(member.name)} ({size} bytes) exceeds the layer's size limit "
                f"of {self.max_bytes} bytes"
            )
        parent_fd, base = self._prepare(name)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent_fd)
        try:
            self._copy_data(tar, member, fd)
            self._owner_mode(fd, name, member)
            for key, value in _entry_xattrs(member):
                self._set_xattr(fd, name, key, value)
            self._set_times_fd(fd, self._times(member))
        finally:
            os.close(fd)
        self.created[name] = "f"
        self.stats.files += 1

    def _copy_data(self, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> None:
        """Write *member*'s data to *fd* straight from the decompressor's chunks (no copy in Python)."""
        source = tar.fileobj
        if not isinstance(source, TarSource):
            raise LayerError("the layer's tar stream is closed")
        if source.tell() != member.offset_data:
            source.seek(member.offset_data)
        remaining = member.size
        while remaining:
            pieces = source.views(min(CHUNK, remaining))
            if not pieces:
                raise LayerError(f"layer entry {shown(member.name)}: the tar stream ends inside its data (truncated)")
            for piece in pieces:
                remaining -= len(piece)
                self.stats.bytes_written += len(piece)
                view = piece
                while view:
                    view = view[os.write(fd, view) :]

    def _symlink(self, name: str, member: tarfile.TarInfo) -> None:
        target = member.linkname
        if not target or "\x00" in target or len(os.fsencode(target)) > SYMLINK_MAX:
            raise LayerError(f"layer entry {shown(member.name)} is a symlink with an invalid target {shown(target)}")
        parent_fd, base = self._prepare(name)
        os.symlink(target, base, dir_fd=parent_fd)
        self._owner_mode_at(parent_fd, base, name, member, chmod=False)
        for key, value in _entry_xattrs(member):
            self._set_xattr(layerfs.proc_path(parent_fd, base), name, key, value)
        self._set_times_at(parent_fd, base, self._times(member))
        self.created[name] = "f"
        self.stats.symlinks += 1

    def _hardlink(self, name: str, member: tarfile.TarInfo) -> None:
        if len(os.fsencode(member.linkname)) > self.max_path:
            raise LayerError(f"layer entry {shown(member.name)} is a hardlink with a target name that is too long")
        target = clean_name(member.linkname)
        if self.created.get(target) == _SKIPPED:
            self.created[name] = _SKIPPED
            self.stats.skipped_devices += 1
            return
        if self.created.get(target) != "f":
            raise LayerError(
                f"layer entry {shown(member.name)} is a hardlink to {shown(member.linkname)}, "
                "which is not a file created earlier in this layer"
            )
        target_parent, target_base = _split(target)
        parent_fd, base = self._prepare(name)
        target_fd = self._parent_fd(target_parent, create=False)
        os.link(target_base, base, src_dir_fd=target_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
        self.created[name] = "f"
        self.stats.hardlinks += 1

    def _node(self, name: str, member: tarfile.TarInfo, kind: int) -> None:
        if member.devmajor < 0 or member.devminor < 0:
            raise LayerError(f"layer entry {shown(member.name)} has a negative device number")
        device = os.makedev(member.devmajor, member.devminor) if kind != stat.S_IFIFO else 0
        parent_fd, base = self._prepare(name)
        os.mknod(base, kind | 0o600, device, dir_fd=parent_fd)
        self._owner_mode_at(parent_fd, base, name, member, chmod=True)
        for key, value in _entry_xattrs(member):
            self._set_xattr(layerfs.proc_path(parent_fd, base), name, key, value)
        self._set_times_at(parent_fd, base, self._times(member))
        self.created[name] = "f"
        if kind == stat.S_IFIFO:
            self.stats.fifos += 1
        else:
            self.stats.devices += 1

    # --- whiteouts --------------------------------------------------------------

    def _whiteout(self, parent: str, hidden: str, member: tarfile.TarInfo) -> None:
        if hidden in ("", ".", ".."):
            raise LayerError(f"layer entry {shown(member.name)} is an invalid whiteout")
        target = f"{parent}/{hidden}" if parent else hidden
        parent_fd = self._parent_fd(parent)
        made_here = self.created.get(target)
        if made_here is not None:
            if made_here == "d":
                self.opaque.add(target)
            return
        existing = layerfs.lstat_at(parent_fd, hidden)
        if existing is not None:
            self._remove_existing(parent_fd, target, existing)
        os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)
        os.chown(
            hidden, self._id(member.uid, member), self._id(member.gid, member), dir_fd=parent_fd, follow_symlinks=False
        )
        self.whiteouts.add(target)
        self.stats.whiteouts += 1

    def _opaque(self, parent: str) -> None:
        self._parent_fd(parent)
        self.opaque.add(parent)

    # --- attributes -------------------------------------------------------------

    @staticmethod
    def _id(value: int, member: tarfile.TarInfo) -> int:
        if not 0 <= value <= _MAX_ID:
            raise LayerError(f"layer entry {shown(member.name)} has an invalid owner id {value}")
        return value

    def _owner_mode(self, fd: int, name: str, member: tarfile.TarInfo) -> None:
        os.fchown(fd, self._id(member.uid, member), self._id(member.gid, member))
        os.fchmod(fd, member.mode & 0o7777)

    def _owner_mode_at(self, parent_fd: int, base: str, name: str, member: tarfile.TarInfo, chmod: bool) -> None:
        os.chown(
            base, self._id(member.uid, member), self._id(member.gid, member), dir_fd=parent_fd, follow_symlinks=False
        )
        if chmod:
            layerfs.chmod_at(parent_fd, base, member.mode & 0o7777)

    def _set_xattr(self, target: Union[int, str], name: str, key: str, value: bytes) -> bool:
        try:
            layerfs.set_xattr(target, key, value)
            return True
        except OSError as exc:
            if key == CAPABILITY_XATTR:
                raise LayerError(
                    f"layer entry {shown(name)}: cannot set its file capabilities ({key}): {exc.strerror}"
                ) from None
            if exc.errno in (errno.ENOTSUP, errno.EPERM):
                self.stats.skipped_xattrs += 1
                return False
            raise LayerError(f"layer entry {shown(name)}: cannot set xattr {key}: {exc.strerror}") from None

    @staticmethod
    def _times(member: tarfile.TarInfo) -> Tuple[int, int]:
        try:
            mtime = _parse_time_ns(member.pax_headers.get("mtime", member.mtime))
            atime = _parse_time_ns(member.pax_headers["atime"]) if "atime" in member.pax_headers else mtime
        except ValueError:
            raise LayerError(f"layer entry {shown(member.name)} has an invalid time") from None
        return atime, mtime

    @staticmethod
    def _set_times_fd(fd: int, times: Tuple[int, int]) -> None:
        try:
            os.utime(fd, ns=times)
        except (OSError, OverflowError):
            pass  # times outside what the filesystem stores are not worth failing a pull

    @staticmethod
    def _set_times_at(parent_fd: int, base: str, times: Tuple[int, int]) -> None:
        try:
            os.utime(base, ns=times, dir_fd=parent_fd, follow_symlinks=False)
        except (OSError, OverflowError):
            pass

    # --- end of the layer -------------------------------------------------------

    def _finish(self) -> None:
        for whiteout in sorted(self.whiteouts):
            if self._below_opaque(whiteout):
                self._drop_whiteout(whiteout)
        for directory in sorted(self.opaque):
            fd = self._existing_dir(directory)
            if fd is not None:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
                self.stats.opaque_dirs += 1
        for directory, times in self.dir_times.items():
            fd = self._existing_dir(directory)
            if fd is not None:
                self._set_times_fd(fd, times)
        try:
            layerfs.syncfs(self.root_fd)
        except OSError as exc:
            raise LayerError(f"cannot flush layer directory {self.dest} to disk: {exc.strerror}") from None

    def _below_opaque(self, relpath: str) -> bool:
        parent = _split(relpath)[0]
        while True:
            if parent in self.opaque:
                return True
            if not parent:
                return False
            parent = _split(parent)[0]

    def _drop_whiteout(self, relpath: str) -> None:
        parent, base = _split(relpath)
        fd = self._existing_dir(parent)
        if fd is None:
            return
        st = layerfs.lstat_at(fd, base)
        if st is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            os.unlink(base, dir_fd=fd)
            self.whiteouts.discard(relpath)
            self.stats.whiteouts -= 1
            self.stats.skipped_entries += 1

    def _existing_dir(self, relpath: str) -> Optional[int]:
        try:
            return self.dirs.get(relpath)
        except (OSError, layerfs.NotADirectoryComponent):
            return None


def apply_layer(
    stream: BinaryIO,
    dest: str,
    parents: Sequence[str] = (),
    *,
    allow_devices: bool = True,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_path: int = DEFAULT_MAX_PATH,
    use_openat2: Optional[bool] = None,
    parents_ready: Optional[Callable[[], None]] = None,
) -> LayerStats:
    """Apply the *uncompressed* layer tar *stream* into the directory *dest*, in overlay form.

    *dest* should be empty (an existing entry is merged or replaced as the OCI
    changeset rules say).  *parents* are the diff directories of the layers
    below, top-most first, used only to give implied directories their
    attributes; pass them fully unpacked (or not at all), or pass
    *parents_ready*: the layer is then unpacked while its parents are still
    being written, and ``parents_ready()`` is called at the end (it returns
    once they are complete, or raises) before the implied directories take
    their attributes from them.  The stream is read
    up to the end of the archive, not to EOF (see :func:`apply_compressed`).
    Raises :class:`LayerError` for anything malformed or hostile; *dest* is
    then left partially written for the caller to remove.
    """
    applier = _Applier(
        dest,
        parents,
        allow_devices=allow_devices,
        max_entries=max_entries,
        max_bytes=max_bytes,
        max_path=max_path,
        use_openat2=use_openat2,
        parents_ready=parents_ready,
    )
    return applier.run(stream)


def _open_blob(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise LayerError(f"cannot open layer blob {path}: {exc.strerror}") from None


def apply_compressed(
    blob: Union[str, BinaryIO],
    dest: str,
    parents: Sequence[str] = (),
    media_type: Optional[str] = None,
    *,
    helper: Optional[bool] = None,
    allow_devices: bool = True,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    parents_ready: Optional[Callable[[], None]] = None,
) -> Tuple[str, LayerStats]:
    """Decompress (gzip, zstd or plain, sniffed), hash and apply a layer blob.

    Returns ``(diff_id, stats)``; the diff_id is the sha256 of every
    uncompressed byte up to EOF, padding after the tar's end included, so it
    matches the image config's ``rootfs.diff_ids`` entry.  Comparing it is the
    caller's job (the layer directory must not be published before).
    *blob* is a path or a binary stream; *helper* forces (True) or forbids
    (False) host decompressor programs.
    """
    if isinstance(blob, str):
        with _open_blob(blob) as handle:
            return apply_compressed(
                handle,
                dest,
                parents,
                media_type,
                helper=helper,
                allow_devices=allow_devices,
                max_entries=max_entries,
                max_bytes=max_bytes,
                parents_ready=parents_ready,
            )
    with open_decompressed(blob, media_type, helper) as (_compression, plain):
        hashing = HashingReader(plain)
        stats = apply_layer(
            hashing,  # type: ignore[arg-type]
            dest,
            parents,
            allow_devices=allow_devices,
            max_entries=max_entries,
            max_bytes=max_bytes,
            parents_ready=parents_ready,
        )
        hashing.drain()
    return hashing.digest(), stats
