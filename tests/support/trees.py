"""Compare file trees exactly: paths, types, modes, owners, link targets, contents, xattrs, hard links.

``snapshot(root)`` walks a tree without following symlinks and records, per
relative path (``.`` is the root), what an image's file system promises:

* ``type`` (file, dir, symlink, char, block, fifo, socket), ``mode`` (the
  permission bits with setuid/setgid/sticky), ``uid``, ``gid``;
* files: ``size`` and ``sha256``; symlinks: ``target``; devices: ``rdev``
  as ``major:minor``;
* ``xattrs`` (hex values; ``trusted.overlay.*`` and ``security.selinux`` left
  out: they describe the storage, not the image);
* ``hardlink``: for a file with several links inside the tree, the first
  path (sorted) of its inode, so two trees agree on which names share data.

Times are not compared: directory times depend on the order a tool writes.
``compare(a, b)`` lists the differences (empty when equal), naming path
and field.  ``overlay_snapshot(lowerdirs)`` mounts the layers read-only as
overlayfs in a private mount namespace (``unshare -m``) and snapshots the
merged view, which is what a container sees.

``python -m support.trees DIR`` prints the snapshot of DIR as JSON.
"""

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Sequence

Snapshot = Dict[str, Dict[str, Any]]
IGNORED_XATTR_PREFIXES = ("trusted.overlay.", "security.selinux")
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_KINDS = (
    (stat.S_ISREG, "file"),
    (stat.S_ISDIR, "dir"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISCHR, "char"),
    (stat.S_ISBLK, "block"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "unknown"


def _xattrs(path: str) -> Dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    values = {}
    for name in sorted(names):
        if name.startswith(IGNORED_XATTR_PREFIXES):
            continue
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError:
            continue
    return values


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot(root: str) -> Snapshot:
    """The tree at *root*, keyed by relative path (see the module docstring)."""
    entries: Snapshot = {}
    inodes: Dict[Any, str] = {}
    pending = ["."]
    while pending:
        relative = pending.pop()
        path = os.path.normpath(os.path.join(root, relative))
        info = os.lstat(path)
        kind = _kind(info.st_mode)
        entry: Dict[str, Any] = {
            "type": kind,
            "mode": oct(stat.S_IMODE(info.st_mode)),
            "uid": info.st_uid,
            "gid": info.st_gid,
        }
        xattrs = _xattrs(path)
        if xattrs:
            entry["xattrs"] = xattrs
        if kind == "file":
            entry["size"] = info.st_size
            entry["sha256"] = _sha256(path)
        elif kind == "symlink":
            entry["target"] = os.readlink(path)
        elif kind in ("char", "block"):
            entry["rdev"] = f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
        if kind != "dir" and info.st_nlink > 1:
            inodes.setdefault((info.st_dev, info.st_ino), relative)
            entry["_inode"] = [info.st_dev, info.st_ino]
        entries[relative] = entry
        if kind == "dir":
            for name in sorted(os.listdir(path), reverse=True):
                pending.append(name if relative == "." else f"{relative}/{name}")
    groups: Dict[Any, List[str]] = {}
    for relative, entry in entries.items():
        inode = entry.pop("_inode", None)
        if inode is not None:
            groups.setdefault(tuple(inode), []).append(relative)
    for members in groups.values():
        if len(members) > 1:
            first = min(members)
            for member in members:
                entries[member]["hardlink"] = first
    return entries


def compare(actual: Snapshot, expected: Snapshot, limit: int = 50) -> List[str]:
    """Differences between two snapshots, at most *limit* of them (and a count of the rest)."""
    problems: List[str] = []
    for path in sorted(set(actual) | set(expected)):
        if path not in actual:
            problems.append(f"{path}: missing ({expected[path]['type']} expected)")
        elif path not in expected:
            problems.append(f"{path}: unexpected {actual[path]['type']}")
        elif actual[path] != expected[path]:
            fields = sorted(set(actual[path]) | set(expected[path]))
            changed = [
                f"{name} {actual[path].get(name)!r} != {expected[path].get(name)!r}"
                for name in fields
                if actual[path].get(name) != expected[path].get(name)
            ]
            problems.append(f"{path}: {'; '.join(changed)}")
    if len(problems) > limit:
        problems = [*problems[:limit], f"... and {len(problems) - limit} more differences"]
    return problems


def overlay_snapshot(lowerdirs_top_first: Sequence[str]) -> Snapshot:
    """Snapshot of the read-only overlay of *lowerdirs_top_first*, mounted in a private mount namespace."""
    with tempfile.TemporaryDirectory(prefix="berth-trees-", dir="/var/tmp") as work:
        target = os.path.join(work, "merged")
        bottom = os.path.join(work, "empty")
        os.mkdir(target)
        os.mkdir(bottom)
        lowers = [*lowerdirs_top_first, bottom]  # overlay wants two lowerdirs when there is no upper
        options = f"lowerdir={':'.join(lowers)},ro,index=off,redirect_dir=off,metacopy=off"
        script = (
            "import json, subprocess, sys\n"
            f"sys.path.insert(0, {TESTS_DIR!r})\n"
            "from support.trees import snapshot\n"
            f"subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o', {options!r}, {target!r}], check=True)\n"
            f"json.dump(snapshot({target!r}), sys.stdout)\n"
        )
        completed = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"overlay snapshot failed ({completed.returncode}): {completed.stderr[-2000:]}")
        return json.loads(completed.stdout)


if __name__ == "__main__":
    json.dump(snapshot(sys.argv[1]), sys.stdout, indent=1, sort_keys=True)
