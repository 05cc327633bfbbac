"""Raw tar building, tree snapshots and overlay mounts for the layer tests.

``TarBuilder`` writes whatever it is told, hostile names and all (unlike
``support.oci``, which refuses unsafe paths on purpose): it is how the
hostile-layer corpus is made.  ``snapshot`` records a tree byte for byte and
mode for mode, so a test can prove nothing outside a layer directory changed.
``overlay`` runs Python code against an overlayfs mount made in a private
mount namespace (``unshare -m``), so a failing test never leaves a mount on
the host.
"""

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

FIXED_MTIME = 1_700_000_000


class TarBuilder:
    """Build a tar member by member; ``name`` is written exactly as given."""

    def __init__(self, fmt: int = tarfile.PAX_FORMAT, uid: int = 0, gid: int = 0) -> None:
        self.format = fmt
        self.uid = uid
        self.gid = gid
        self.members: List[Tuple[tarfile.TarInfo, Optional[bytes]]] = []

    def _info(self, name: str, kind: bytes, mode: int, **attrs: Any) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid = attrs.pop("uid", self.uid)
        info.gid = attrs.pop("gid", self.gid)
        info.mtime = attrs.pop("mtime", FIXED_MTIME)
        xattrs = attrs.pop("xattrs", None)
        pax = attrs.pop("pax", None)
        for key, value in attrs.items():
            setattr(info, key, value)
        if xattrs or pax:
            headers = dict(pax or {})
            for key, value in (xattrs or {}).items():
                headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
            info.pax_headers = headers
        return info

    def dir(self, name: str, mode: int = 0o755, **attrs: Any) -> "TarBuilder":
        self.members.append((self._info(name, tarfile.DIRTYPE, mode, **attrs), None))
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **attrs: Any) -> "TarBuilder":
        info = self._info(name, tarfile.REGTYPE, mode, **attrs)
        info.size = len(data)
        self.members.append((info, data))
        return self

    def symlink(self, name: str, target: str, **attrs: Any) -> "TarBuilder":
        self.members.append((self._info(name, tarfile.SYMTYPE, 0o777, linkname=target, **attrs), None))
        return self

    def link(self, name: str, target: str, mode: int = 0o644, **attrs: Any) -> "TarBuilder":
        self.members.append((self._info(name, tarfile.LNKTYPE, mode, linkname=target, **attrs), None))
        return self

    def char(self, name: str, major: int, minor: int, mode: int = 0o666, **attrs: Any) -> "TarBuilder":
        info = self._info(name, tarfile.CHRTYPE, mode, devmajor=major, devminor=minor, **attrs)
        self.members.append((info, None))
        return self

    def block(self, name: str, major: int, minor: int, mode: int = 0o660, **attrs: Any) -> "TarBuilder":
        info = self._info(name, tarfile.BLKTYPE, mode, devmajor=major, devminor=minor, **attrs)
        self.members.append((info, None))
        return self

    def fifo(self, name: str, mode: int = 0o644, **attrs: Any) -> "TarBuilder":
        self.members.append((self._info(name, tarfile.FIFOTYPE, mode, **attrs), None))
        return self

    def whiteout(self, path: str) -> "TarBuilder":
        parent, _slash, base = path.rpartition("/")
        return self.file(f"{parent}/.wh.{base}" if parent else f".wh.{base}")

    def opaque(self, directory: str) -> "TarBuilder":
        return self.file(f"{directory}/.wh..wh..opq")

    def raw(self, info: tarfile.TarInfo, data: Optional[bytes] = None) -> "TarBuilder":
        self.members.append((info, data))
        return self

    def tobytes(self) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=self.format) as archive:
            for info, data in self.members:
                archive.addfile(info, io.BytesIO(data) if data is not None else None)
        return buffer.getvalue()

    def stream(self) -> io.BytesIO:
        return io.BytesIO(self.tobytes())


def pax_header(records: Dict[str, str], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A raw PAX extended header block (for headers tarfile would not write itself)."""
    body = b""
    for key, value in records.items():
        record = f" {key}={value}\n".encode()
        length = previous = 0
        while True:
            length = len(record) + len(str(previous))
            if length == previous:
                break
            previous = length
        body += str(length).encode() + record
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = kind
    info.size = len(body)
    header = info.tobuf(tarfile.USTAR_FORMAT)
    return header + body + b"\0" * (-len(body) % 512)


def ustar_member(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    """One member in plain ustar form, data padded (no end-of-archive blocks)."""
    info.size = len(data) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else info.size
    return info.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


END_OF_ARCHIVE = b"\0" * 1024


def snapshot(root: str, skip: Sequence[str] = ()) -> Dict[str, Dict[str, Any]]:
    """Every path under *root* (relative) with type, mode, owner, size, content hash, target, xattrs."""
    result: Dict[str, Dict[str, Any]] = {}
    skipped = {os.path.normpath(os.path.join(root, path)) for path in skip}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if os.path.join(directory, name) not in skipped]
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            if path in skipped:
                continue
            result[os.path.relpath(path, root)] = describe(path)
    result["."] = describe(root)
    return result


def describe(path: str, times: bool = False) -> Dict[str, Any]:
    st = os.lstat(path)
    info: Dict[str, Any] = {
        "type": stat.S_IFMT(st.st_mode),
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }
    if times:
        info["mtime"] = st.st_mtime_ns
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as handle:
            info["sha256"] = hashlib.sha256(handle.read()).hexdigest()
        info["size"] = st.st_size
    elif stat.S_ISLNK(st.st_mode):
        info["target"] = os.readlink(path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    info["xattrs"] = xattrs(path)
    return info


def xattrs(path: str) -> Dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {name: os.getxattr(path, name, follow_symlinks=False).hex() for name in sorted(names)}


_OVERLAY_SCRIPT = textwrap.dedent(
    """
    import json, os, subprocess, sys
    spec = json.loads(sys.argv[1])
    options = "lowerdir=" + ":".join(spec["lowers"])
    if spec.get("upper"):
        options += ",upperdir=%s,workdir=%s" % (spec["upper"], spec["work"])
    options += ",index=off,redirect_dir=off,metacopy=off"
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, spec["merged"]], check=True)
    sys.path[:0] = spec["path"]
    namespace = {"merged": spec["merged"]}
    exec(spec["code"], namespace)
    print(json.dumps(namespace.get("result")))
    """
)


def overlay(
    lowers: Sequence[str],
    merged: str,
    code: str,
    upper: Optional[str] = None,
    work: Optional[str] = None,
) -> Any:
    """Mount overlayfs at *merged* in a private mount namespace, run *code* there, return its ``result``.

    *lowers* are top-most first.  *code* sees ``merged`` (the mount point) and
    may assign ``result`` (JSON-serialisable).  The mount disappears with the
    namespace, whatever happens.
    """
    spec = {
        "lowers": list(lowers),
        "upper": upper,
        "work": work,
        "merged": merged,
        "code": code,
        "path": [os.path.dirname(os.path.abspath(__file__))],
    }
    done = subprocess.run(
        ["unshare", "--mount", sys.executable, "-c", _OVERLAY_SCRIPT, json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise AssertionError(f"overlay helper failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
