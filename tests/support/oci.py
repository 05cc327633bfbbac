"""Build OCI images from directories or lists of tar entries: the tests' oracle.

This module is deliberately independent of Berth's runtime package: the
runtime is tested against images made here, so nothing here may share code
with what it checks.

* ``Entry`` and its constructors (``file``, ``directory``, ``symlink``,
  ``hardlink``, ``whiteout``, ``opaque``, ...) describe tar members;
  ``entries_from_dir`` reads a directory tree (optionally an overlay upper
  dir, whose whiteouts and opaque dirs become OCI ``.wh.`` entries).
* ``write_tar`` makes a deterministic tar: entries sorted by path, fixed
  mtime, uid/gid 0 unless given, no user/group names, PAX records only where
  needed (xattrs, long names).
* ``Layout`` is an OCI image layout (``oci-layout``, ``index.json``,
  ``blobs/sha256/``) that umoci and skopeo accept; ``Layout.add_layer``
  compresses (gzip with header mtime 0, zstd, or none) and hashes in one pass.
* ``Image`` / ``Index`` render the same content as OCI (manifest, index) or
  Docker schema2 (manifest, manifest list) -- layers and the config are the
  same bytes in both forms, only media types differ, so the image id (config
  digest) is the same too, as with Docker.

Pushing lives in ``support.pusher``.
"""

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from typing import IO, Any, BinaryIO, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

FIXED_MTIME = 0
FIXED_CREATED = "1970-01-01T00:00:00Z"
EMPTY_JSON = b"{}"

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

COMPRESSIONS = ("gzip", "zstd", "none")
LAYER_MEDIA_TYPES: Dict[str, Dict[str, str]] = {
    "oci": {
        "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
        "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
        "none": "application/vnd.oci.image.layer.v1.tar",
    },
    "docker": {
        "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        # Not in Docker's own spec; containerd's constant, accepted by Docker 23+.
        "zstd": "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "none": "application/vnd.docker.image.rootfs.diff.tar",
    },
}
FORMATS = ("oci", "docker")
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_DROPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")
_CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compression_of(media_type: str) -> str:
    """gzip, zstd or none for a layer media type (OCI or Docker)."""
    for table in LAYER_MEDIA_TYPES.values():
        for compression, known in table.items():
            if known == media_type:
                return compression
    raise ValueError(f"unknown layer media type {media_type!r}")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown manifest format {fmt!r}: use 'oci' or 'docker'")


# ---------------------------------------------------------------------------------
# Tar entries
# ---------------------------------------------------------------------------------
@dataclass
class Entry:
    """One tar member.  ``path`` is relative (no leading ``/``), directories without a trailing ``/``."""

    path: str
    kind: str = "file"  # file, dir, symlink, hardlink, char, block, fifo
    data: bytes = b""
    source: Optional[str] = None  # read the content from this file instead of ``data``
    size: Optional[int] = None  # size of ``source`` (checked while writing)
    mode: Optional[int] = None
    uid: int = 0
    gid: int = 0
    link: str = ""  # symlink target, or hardlink target path
    devmajor: int = 0
    devminor: int = 0
    xattrs: Dict[str, bytes] = field(default_factory=dict)
    mtime: int = FIXED_MTIME

    def __post_init__(self) -> None:
        clean = self.path.strip("/")
        if not clean or clean.startswith("../") or "/../" in f"/{clean}/" or clean == "..":
            raise ValueError(f"tar entry path {self.path!r} must be relative and stay inside the layer")
        self.path = clean
        if self.mode is None:
            self.mode = {"dir": 0o755, "symlink": 0o777}.get(self.kind, 0o644)


def file(path: str, data: Union[bytes, str] = b"", mode: int = 0o644, **kwargs: Any) -> Entry:
    return Entry(path, "file", data=data.encode() if isinstance(data, str) else data, mode=mode, **kwargs)


def directory(path: str, mode: int = 0o755, **kwargs: Any) -> Entry:
    return Entry(path, "dir", mode=mode, **kwargs)


def symlink(path: str, target: str, **kwargs: Any) -> Entry:
    return Entry(path, "symlink", link=target, **kwargs)


def hardlink(path: str, target: str, **kwargs: Any) -> Entry:
    """A hard link to *target*, another path of the same layer."""
    return Entry(path, "hardlink", link=target.strip("/"), **kwargs)


def char_device(path: str, major: int, minor: int, mode: int = 0o666, **kwargs: Any) -> Entry:
    return Entry(path, "char", devmajor=major, devminor=minor, mode=mode, **kwargs)


def fifo(path: str, mode: int = 0o644, **kwargs: Any) -> Entry:
    return Entry(path, "fifo", mode=mode, **kwargs)


def whiteout(path: str) -> Entry:
    """``DIR/.wh.NAME``: deletes ``DIR/NAME`` (a file or a whole directory) of the lower layers."""
    parent, name = os.path.split(path.strip("/"))
    return Entry(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else f"{WHITEOUT_PREFIX}{name}", "file", mode=0o600)


def opaque(path: str) -> Entry:
    """``DIR/.wh..wh..opq``: hides every child of DIR from the lower layers."""
    return Entry(f"{path.strip('/')}/{OPAQUE_MARKER}", "file", mode=0o600)


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def _sort_key(entry: Entry) -> bytes:
    return os.fsencode(entry.path)


def write_tar(entries: Iterable[Entry], out: IO[bytes]) -> None:
    """Write a deterministic tar of *entries* to *out* (sorted by path; duplicates are an error)."""
    ordered = sorted(entries, key=_sort_key)
    seen = set()
    for entry in ordered:
        if entry.path in seen:
            raise ValueError(f"duplicate tar entry {entry.path!r}: a layer holds each path once")
        if entry.kind == "hardlink" and entry.link not in seen:
            raise ValueError(
                f"hard link {entry.path!r} -> {entry.link!r}: the target must be an earlier entry of the same layer "
                "(build hostile layers with Layout.add_tar)"
            )
        seen.add(entry.path)
    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for entry in ordered:
            info = tarfile.TarInfo(entry.path)
            info.type = _TAR_TYPES[entry.kind]
            info.mode = entry.mode or 0
            info.uid, info.gid = entry.uid, entry.gid
            info.uname = info.gname = ""
            info.mtime = entry.mtime
            info.linkname = entry.link
            info.devmajor, info.devminor = entry.devmajor, entry.devminor
            if entry.xattrs:
                info.pax_headers = {
                    f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape")
                    for name, value in sorted(entry.xattrs.items())
                }
            if entry.kind != "file":
                tar.addfile(info)
            elif entry.source is not None:
                info.size = os.lstat(entry.source).st_size if entry.size is None else entry.size
                with open(entry.source, "rb") as handle:
                    tar.addfile(info, _ExactReader(handle, info.size, entry.source))
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    buffer = io.BytesIO()
    write_tar(entries, buffer)
    return buffer.getvalue()


class _ExactReader:
    """Reads exactly *size* bytes of a file, failing if it changed while the tar was written."""

    def __init__(self, handle: BinaryIO, size: int, name: str) -> None:
        self._handle, self._left, self._name = handle, size, name

    def read(self, n: int = -1) -> bytes:
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._handle.read(want)
        if len(data) < want:
            raise OSError(f"{self._name} shrank while it was being archived")
        self._left -= len(data)
        return data


def entries_from_dir(
    root: str,
    *,
    overlay: bool = False,
    keep_mtime: bool = False,
    owner: Optional[Tuple[int, int]] = None,
    exclude: Sequence[str] = (),
) -> List[Entry]:
    """Tar entries for the tree under *root* (the root itself is not an entry).

    Owners, modes, xattrs, symlinks and hard links come from the files; mtimes are
    fixed unless *keep_mtime*; *owner* forces one uid/gid.  With *overlay*, *root*
    is an overlayfs upper dir: a 0:0 character device becomes ``.wh.NAME`` and a
    ``trusted.overlay.opaque=y`` directory gets ``DIR/.wh..wh..opq``.  Overlay and
    SELinux xattrs are always dropped.  *exclude* lists relative paths to skip
    (with everything below them).
    """
    entries: List[Entry] = []
    inodes: Dict[str, Tuple[int, int]] = {}
    excluded = {p.strip("/") for p in exclude}
    for rel, st in _walk(root, excluded):
        path = os.path.join(root, rel)
        uid, gid = owner if owner else (st.st_uid, st.st_gid)
        common: Dict[str, Any] = {
            "uid": uid,
            "gid": gid,
            "mode": stat.S_IMODE(st.st_mode),
            "mtime": int(st.st_mtime) if keep_mtime else FIXED_MTIME,
        }
        if stat.S_ISCHR(st.st_mode) and overlay and st.st_rdev == 0:
            entries.append(whiteout(rel))
            continue
        xattrs = _read_xattrs(path)
        if stat.S_ISDIR(st.st_mode):
            entries.append(Entry(rel, "dir", xattrs=_kept(xattrs), **common))
            if overlay and xattrs.get("trusted.overlay.opaque") == b"y":
                entries.append(replace(opaque(rel), uid=uid, gid=gid))
        elif stat.S_ISREG(st.st_mode):
            entries.append(Entry(rel, "file", source=path, size=st.st_size, xattrs=_kept(xattrs), **common))
            if st.st_nlink > 1:
                inodes[rel] = (st.st_dev, st.st_ino)
        elif stat.S_ISLNK(st.st_mode):
            entries.append(Entry(rel, "symlink", link=os.readlink(path), xattrs=_kept(xattrs), **common))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            kind = "char" if stat.S_ISCHR(st.st_mode) else "block"
            dev = st.st_rdev
            entries.append(Entry(rel, kind, devmajor=os.major(dev), devminor=os.minor(dev), **common))
        elif stat.S_ISFIFO(st.st_mode):
            entries.append(Entry(rel, "fifo", **common))
        # sockets cannot be archived: skipped, as tar does
    return _link_hardlinks(entries, inodes)


def _walk(root: str, excluded: set, rel: str = "") -> Iterator[Tuple[str, os.stat_result]]:
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        children = sorted(it, key=lambda e: os.fsencode(e.name))
    for child in children:
        child_rel = f"{rel}/{child.name}" if rel else child.name
        if child_rel in excluded:
            continue
        st = child.stat(follow_symlinks=False)
        yield child_rel, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, excluded, child_rel)


def _link_hardlinks(entries: List[Entry], inodes: Dict[str, Tuple[int, int]]) -> List[Entry]:
    """The first path (in tar order) of a multiply-linked inode stays a file; later ones become links to it."""
    first: Dict[Tuple[int, int], str] = {}
    result = []
    for entry in sorted(entries, key=_sort_key):
        key = inodes.get(entry.path)
        if key is not None and key in first:
            entry = replace(entry, kind="hardlink", link=first[key], source=None, size=None, xattrs={})
        elif key is not None:
            first[key] = entry.path
        result.append(entry)
    return result


def _read_xattrs(path: str) -> Dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return values


def _kept(xattrs: Dict[str, bytes]) -> Dict[str, bytes]:
    return {k: v for k, v in xattrs.items() if not k.startswith(_DROPPED_XATTR_PREFIXES)}


# ---------------------------------------------------------------------------------
# Compression with one-pass hashing
# ---------------------------------------------------------------------------------
class _HashingWriter:
    """A write-only file object that hashes and counts what passes through to *out*."""

    def __init__(self, out: Optional[IO[bytes]]) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self._out is not None:
            self._out.write(data)
        return len(data)

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Compressor:
    """A file object compressing into *out*; ``close()`` finishes the stream but leaves *out* open."""

    def __init__(self, compression: str, out: IO[bytes], level: Optional[int]) -> None:
        self._gzip: Optional[gzip.GzipFile] = None
        self._zstd: Any = None
        self._out = out
        if compression == "gzip":
            # filename="" and mtime=0: the gzip header carries neither, so equal input gives equal bytes.
            self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=level or 6)  # type: ignore[arg-type]
        elif compression == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdCompressor(level=level or 3).stream_writer(out, closefd=False)  # type: ignore[arg-type]
        elif compression != "none":
            raise ValueError(f"unknown compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")

    def write(self, data: bytes) -> int:
        if self._gzip is not None:
            return self._gzip.write(data)
        if self._zstd is not None:
            self._zstd.write(data)
            return len(data)
        return self._out.write(data)

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
        if self._zstd is not None:
            self._zstd.close()


def compress(data: bytes, compression: str, level: Optional[int] = None) -> bytes:
    """Compress *data* the way layers are compressed here (deterministic)."""
    out = io.BytesIO()
    comp = _Compressor(compression, out, level)
    comp.write(data)
    comp.close()
    return out.getvalue()


# ---------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """``linux/arm/v7`` -> Platform('linux', 'arm', 'v7')."""
        parts = text.split("/")
        if len(parts) not in (2, 3):
            raise ValueError(f"platform {text!r} must be OS/ARCH or OS/ARCH/VARIANT")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> "Platform":
        machine = os.uname().machine
        arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "s390x": "s390x"}.get(
            machine, machine
        )
        return cls("linux", arch, "v7" if machine == "armv7l" else None)

    def to_json(self) -> Dict[str, str]:
        value = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            value["variant"] = self.variant
        return value

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Layer:
    """A layer blob: compressed digest and size, diff_id of the uncompressed tar, compression."""

    digest: str
    size: int
    diff_id: str
    compression: str

    def media_type(self, fmt: str = "oci") -> str:
        _check_format(fmt)
        return LAYER_MEDIA_TYPES[fmt][self.compression]

    def descriptor(self, fmt: str = "oci") -> Dict[str, Any]:
        return {"mediaType": self.media_type(fmt), "digest": self.digest, "size": self.size}


@dataclass
class ImageConfig:
    """The runtime part of an image config (Docker's capitalised keys)."""

    env: List[str] = field(
        default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    )
    cmd: Optional[List[str]] = None
    entrypoint: Optional[List[str]] = None
    working_dir: Optional[str] = None
    exposed_ports: List[str] = field(default_factory=list)
    labels: Dict[str, str] = field(default_factory=dict)
    user: Optional[str] = None
    stop_signal: Optional[str] = None
    volumes: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        value: Dict[str, Any] = {"Env": list(self.env)}
        optional = {
            "Cmd": self.cmd,
            "Entrypoint": self.entrypoint,
            "WorkingDir": self.working_dir,
            "User": self.user,
            "StopSignal": self.stop_signal,
        }
        value.update({k: v for k, v in optional.items() if v is not None})
        if self.exposed_ports:
            value["ExposedPorts"] = {port if "/" in port else f"{port}/tcp": {} for port in self.exposed_ports}
        if self.labels:
            value["Labels"] = dict(self.labels)
        if self.volumes:
            value["Volumes"] = {v: {} for v in self.volumes}
        return value


@dataclass(frozen=True)
class History:
    created_by: str
    empty_layer: bool = False
    comment: Optional[str] = None
    created: str = FIXED_CREATED

    def to_json(self) -> Dict[str, Any]:
        value: Dict[str, Any] = {"created": self.created, "created_by": self.created_by}
        if self.comment:
            value["comment"] = self.comment
        if self.empty_layer:
            value["empty_layer"] = True
        return value


def make_config(
    layers: Sequence[Layer],
    config: ImageConfig,
    history: Sequence[History],
    platform: Platform,
    created: str = FIXED_CREATED,
) -> bytes:
    """The config blob.  *history* must have one non-empty entry per layer, in order."""
    non_empty = sum(1 for h in history if not h.empty_layer)
    if history and non_empty != len(layers):
        raise ValueError(f"history has {non_empty} non-empty entries for {len(layers)} layers")
    value: Dict[str, Any] = {"created": created, **platform.to_json()}
    value["config"] = config.to_json()
    value["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    value["history"] = [h.to_json() for h in history] or [History(f"layer {i}").to_json() for i in range(len(layers))]
    return json.dumps(value, separators=(",", ":")).encode()


def _json(value: Dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class Image:
    """A single-platform image: config bytes and layers, renderable as OCI or Docker schema2."""

    config_bytes: bytes
    layers: Tuple[Layer, ...]
    platform: Platform
    layout: Optional["Layout"] = None

    @property
    def config_digest(self) -> str:
        """The image id."""
        return sha256_digest(self.config_bytes)

    image_id = config_digest

    @property
    def config(self) -> Dict[str, Any]:
        return json.loads(self.config_bytes)

    @property
    def diff_ids(self) -> List[str]:
        return [layer.diff_id for layer in self.layers]

    def media_type(self, fmt: str = "oci") -> str:
        _check_format(fmt)
        return OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST

    def manifest_bytes(self, fmt: str = "oci") -> bytes:
        _check_format(fmt)
        return _json(
            {
                "schemaVersion": 2,
                "mediaType": self.media_type(fmt),
                "config": {
                    "mediaType": OCI_CONFIG if fmt == "oci" else DOCKER_CONFIG,
                    "digest": self.config_digest,
                    "size": len(self.config_bytes),
                },
                "layers": [layer.descriptor(fmt) for layer in self.layers],
            }
        )

    def manifest_digest(self, fmt: str = "oci") -> str:
        return sha256_digest(self.manifest_bytes(fmt))

    def descriptor(self, fmt: str = "oci", with_platform: bool = False) -> Dict[str, Any]:
        data = self.manifest_bytes(fmt)
        value: Dict[str, Any] = {"mediaType": self.media_type(fmt), "digest": sha256_digest(data), "size": len(data)}
        if with_platform:
            value["platform"] = self.platform.to_json()
        return value

    def blob_path(self, digest: str) -> str:
        if self.layout is None:
            raise ValueError("this image is not stored in a layout, so its blobs cannot be read")
        return self.layout.blob_path(digest)


@dataclass
class Index:
    """A multi-platform image: an OCI index or a Docker manifest list of ``Image``s."""

    images: Tuple[Image, ...]

    def media_type(self, fmt: str = "oci") -> str:
        _check_format(fmt)
        return OCI_INDEX if fmt == "oci" else DOCKER_LIST

    def manifest_bytes(self, fmt: str = "oci") -> bytes:
        return _json(
            {
                "schemaVersion": 2,
                "mediaType": self.media_type(fmt),
                "manifests": [image.descriptor(fmt, with_platform=True) for image in self.images],
            }
        )

    def manifest_digest(self, fmt: str = "oci") -> str:
        return sha256_digest(self.manifest_bytes(fmt))

    def for_platform(self, platform: Union[str, Platform]) -> Image:
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        for image in self.images:
            if image.platform == wanted:
                return image
        raise KeyError(f"no image for {wanted} in this index ({', '.join(str(i.platform) for i in self.images)})")


Target = Union[Image, Index]


# ---------------------------------------------------------------------------------
# OCI image layout
# ---------------------------------------------------------------------------------
class Layout:
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256/``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.blobs_dir = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blobs_dir, exist_ok=True)
        marker = os.path.join(path, "oci-layout")
        if not os.path.exists(marker):
            with open(marker, "w", encoding="ascii") as handle:
                json.dump({"imageLayoutVersion": OCI_LAYOUT_VERSION}, handle)
        index_path = os.path.join(path, "index.json")
        if os.path.exists(index_path):
            with open(index_path, encoding="utf-8") as handle:
                self._index = json.load(handle)
        else:
            self._index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
            self._save_index()

    # -- blobs ------------------------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        algorithm, hexpart = digest.split(":", 1) if ":" in digest else ("", digest)
        if algorithm != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return os.path.join(self.blobs_dir, hexpart)

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as handle:
            return handle.read()

    def put_blob(self, data: bytes) -> Tuple[str, int]:
        digest = sha256_digest(data)
        path = self.blob_path(digest)
        if not os.path.exists(path):
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.blobs_dir)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        return digest, len(data)

    def link_blob_from(self, other: "Layout", digest: str) -> None:
        """Share a blob with another layout (hard link, copy across filesystems)."""
        import shutil

        target = self.blob_path(digest)
        if os.path.exists(target):
            return
        try:
            os.link(other.blob_path(digest), target)
        except OSError:
            shutil.copyfile(other.blob_path(digest), target)

    # -- building ---------------------------------------------------------------------
    def add_layer(self, entries: Iterable[Entry], compression: str = "gzip", level: Optional[int] = None) -> Layer:
        """Write *entries* as one layer blob; tar, compress and both hashes in one pass."""
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")
        fd, tmp = tempfile.mkstemp(prefix=".tmp-layer-", dir=self.blobs_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                blob = _HashingWriter(handle)
                compressor = _Compressor(compression, blob, level)  # type: ignore[arg-type]
                tar_stream = _HashingWriter(compressor)  # type: ignore[arg-type]
                write_tar(entries, tar_stream)  # type: ignore[arg-type]
                compressor.close()
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.blob_path(blob.digest))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return Layer(digest=blob.digest, size=blob.size, diff_id=tar_stream.digest, compression=compression)

    def add_tar(self, tar_data: bytes, compression: str = "gzip", level: Optional[int] = None) -> Layer:
        """A layer from ready tar bytes, written as given (for hand-made or hostile layers)."""
        blob = compress(tar_data, compression, level)
        digest, size = self.put_blob(blob)
        return Layer(digest=digest, size=size, diff_id=sha256_digest(tar_data), compression=compression)

    def add_image(
        self,
        layers: Sequence[Layer],
        config: Optional[ImageConfig] = None,
        history: Sequence[History] = (),
        platform: Optional[Platform] = None,
        created: str = FIXED_CREATED,
    ) -> Image:
        for layer in layers:
            if not self.has_blob(layer.digest):
                raise ValueError(f"layer {layer.digest} is not in the layout {self.path}")
        config_bytes = make_config(layers, config or ImageConfig(), history, platform or Platform.host(), created)
        self.put_blob(config_bytes)
        image = Image(config_bytes, tuple(layers), platform or Platform.host(), layout=self)
        self.put_blob(image.manifest_bytes("oci"))
        return image

    def add_index(self, images: Sequence[Image]) -> Index:
        index = Index(tuple(images))
        self.put_blob(index.manifest_bytes("oci"))
        return index

    def tag(self, name: str, target: Target) -> None:
        """Name *target* in index.json (OCI form; replaces an earlier entry of that name)."""
        data = target.manifest_bytes("oci")
        digest, size = self.put_blob(data)
        manifests = [m for m in self._index["manifests"] if m.get("annotations", {}).get(REF_NAME) != name]
        descriptor: Dict[str, Any] = {"mediaType": target.media_type("oci"), "digest": digest, "size": size}
        if isinstance(target, Image):
            descriptor["platform"] = target.platform.to_json()
        descriptor["annotations"] = {REF_NAME: name}
        manifests.append(descriptor)
        self._index["manifests"] = manifests
        self._save_index()

    def _save_index(self) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-index-", dir=self.path)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._index, handle, separators=(",", ":"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(self.path, "index.json"))

    # -- reading ----------------------------------------------------------------------
    def tags(self) -> List[str]:
        return [m["annotations"][REF_NAME] for m in self._index["manifests"] if REF_NAME in m.get("annotations", {})]

    def get(self, name: str) -> Target:
        """The image or index tagged *name*."""
        for descriptor in self._index["manifests"]:
            if descriptor.get("annotations", {}).get(REF_NAME) == name:
                return self.load(descriptor["digest"])
        raise KeyError(f"no tag {name!r} in the layout {self.path} (tags: {', '.join(self.tags())})")

    def load(self, digest: str) -> Target:
        """The image or index whose manifest has *digest*."""
        manifest = json.loads(self.read_blob(digest))
        media_type = manifest.get("mediaType")
        if media_type in (OCI_INDEX, DOCKER_LIST):
            return Index(tuple(self._load_image(m["digest"]) for m in manifest["manifests"]))  # type: ignore[misc]
        return self._load_image(digest)

    def _load_image(self, digest: str) -> Image:
        manifest = json.loads(self.read_blob(digest))
        config_bytes = self.read_blob(manifest["config"]["digest"])
        config = json.loads(config_bytes)
        diff_ids = config["rootfs"]["diff_ids"]
        layers = tuple(
            Layer(d["digest"], d["size"], diff_id, compression_of(d["mediaType"]))
            for d, diff_id in zip(manifest["layers"], diff_ids)
        )
        platform = Platform(config.get("os", "linux"), config.get("architecture", "amd64"), config.get("variant"))
        return Image(config_bytes, layers, platform, layout=self)


def iter_blob(path: str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                return
            yield chunk


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    for chunk in iter_blob(path):
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()
