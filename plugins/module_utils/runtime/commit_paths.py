"""What the runtime itself wrote into a container's upper directory, so that ``commit`` leaves it out.

Berth has no "init layer" under the container's writable layer (Docker puts
its mount points there); when an image lacks a path the runtime mounts on,
the set-up creates it through the overlay, so it lands in ``upper/``:
``/proc``, ``/sys``, ``/dev``, ``/etc/hosts``, ``/etc/hostname``,
``/etc/resolv.conf``, volume, bind and tmpfs targets, and for systemd
containers ``/run``, ``/run/lock`` and ``/tmp`` — plus any missing parent
directories, and the copy-up of existing parents made to hold them.

:func:`runtime_entries` finds exactly those entries:

* each mount destination is resolved the way the set-up resolves it, through
  the container's own view (upper over image layers, symlinks followed
  inside the root), so ``/etc/resolv.conf -> ../run/...`` names the file the
  set-up really created;
* it is left out when the upper directory has it with the kind the runtime
  creates (a directory, or a regular file) and the image has no entry of
  that kind there (an image's own ``/etc/hosts`` is never touched by the
  runtime, so a change there is the user's);
* a parent directory is left out when everything it holds in the upper
  directory is left out, it is not opaque, and it is either new (the image
  lacks it) or an unchanged copy-up (same type, mode, owner and xattrs as
  the image's; only its mtime moved, by the runtime's own entry).

Anything else in ``upper/`` is the container's change and is committed.
"""

import errno
import os
import stat
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

DIRECTORY = "dir"
FILE = "file"
ETC_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
RUNTIME_DIRS = ("/proc", "/sys", "/dev")
SYSTEMD_TMPFS = ("/run", "/run/lock", "/tmp")
OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
MAX_SYMLINKS = 40

Parts = Tuple[str, ...]


class _Found:
    """One path of an overlay view: the top-most entry, where it is, and the directories merged under it."""

    __slots__ = ("path", "st", "stack")

    def __init__(self, st: os.stat_result, path: str, stack: List[str]) -> None:
        self.st = st
        self.path = path
        self.stack = stack

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def _lstat(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class OverlayView:
    """Read-only lookups in overlay layer directories (top-most first), resolved as overlayfs does.

    A whiteout (character device 0:0) hides the name in the layers below; an
    opaque directory hides the directories below it; a non-directory ends the
    merge.  Only real directories are ever descended into, so no symlink in a
    layer is followed on the host.
    """

    def __init__(self, layers: Sequence[str]) -> None:
        self.layers = list(layers)

    def lookup(self, parts: Sequence[str]) -> Optional[_Found]:
        """The entry at *parts* (path components, no symlinks among the parents), or None."""
        stack = list(self.layers)
        found: Optional[_Found] = None
        if not parts:
            root = _lstat(stack[0]) if stack else None
            return _Found(root, stack[0], stack) if root else None
        for position, name in enumerate(parts):
            merged: List[str] = []
            found = None
            for directory in stack:
                path = os.path.join(directory, name)
                st = _lstat(path)
                if st is None:
                    continue
                if _is_whiteout(st):
                    break
                if found is None:
                    found = _Found(st, path, merged)
                if not stat.S_ISDIR(st.st_mode):
                    break
                merged.append(path)
                if is_opaque(path):
                    break
            if found is None:
                return None
            if not found.is_dir:
                return found if position == len(parts) - 1 else None
            stack = merged
        return found

    def resolve(self, path: str) -> Optional[Parts]:
        """*path* with symlinks followed inside the view's root, like the container set-up resolves it.

        Missing components are kept as they are (the set-up creates them);
        None when the path loops through more than 40 symlinks.
        """
        pending = [part for part in path.split("/") if part not in ("", ".")]
        pending.reverse()
        names: List[str] = []
        followed = 0
        while pending:
            name = pending.pop()
            if name == "..":
                if names:
                    names.pop()
                continue
            found = self.lookup((*names, name))
            if found is not None and stat.S_ISLNK(found.st.st_mode):
                followed += 1
                if followed > MAX_SYMLINKS:
                    return None
                target = os.readlink(found.path)
                if target.startswith("/"):
                    names.clear()
                pending.extend(reversed([part for part in target.split("/") if part not in ("", ".")]))
                continue
            names.append(name)
        return tuple(names)


def mount_points(record: Dict[str, Any]) -> List[Tuple[str, str]]:
    """``(container path, "dir" | "file")`` of every mount the runtime makes for a container record."""
    spec, effective = record["spec"], record["effective"]
    points = [(path, DIRECTORY) for path in RUNTIME_DIRS] + [(path, FILE) for path in ETC_FILES]
    destinations = []
    for volume in record.get("volumes", []):
        host_path = volume.get("host_path") or volume.get("source") or ""
        kind = FILE if host_path and os.path.exists(host_path) and not os.path.isdir(host_path) else DIRECTORY
        points.append((volume["target"], kind))
        destinations.append(_clean(volume["target"]))
    for target in spec.get("tmpfs") or {}:
        points.append((target, DIRECTORY))
        destinations.append(_clean(target))
    if effective.get("systemd"):
        points.extend((path, DIRECTORY) for path in SYSTEMD_TMPFS if path not in destinations)
    return points


def _clean(path: str) -> str:
    parts: List[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/" + "/".join(parts)


def _upper_entry(upper: str, parts: Parts) -> Optional[os.stat_result]:
    """The entry at *parts* in the upper directory alone, reached through real directories only."""
    path = upper
    for position, name in enumerate(parts):
        path = os.path.join(path, name)
        st = _lstat(path)
        if st is None or (position < len(parts) - 1 and not stat.S_ISDIR(st.st_mode)):
            return None
    return st if parts else None


def _kind_matches(st: os.stat_result, kind: str) -> bool:
    return stat.S_ISDIR(st.st_mode) if kind == DIRECTORY else stat.S_ISREG(st.st_mode)


def _plain_xattrs(path: str) -> Dict[str, bytes]:
    result = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    for name in names:
        if name.startswith(_OVERLAY_XATTR_PREFIXES):
            continue
        try:
            result[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return result


def _unchanged_copy_up(upper_path: str, upper_st: os.stat_result, lower: _Found) -> bool:
    if not lower.is_dir:
        return False
    same = (upper_st.st_mode, upper_st.st_uid, upper_st.st_gid) == (
        lower.st.st_mode,
        lower.st.st_uid,
        lower.st.st_gid,
    )
    return same and _plain_xattrs(upper_path) == _plain_xattrs(lower.path)


def runtime_entries(upper: str, lowers_top_first: Sequence[str], points: Sequence[Tuple[str, str]]) -> List[str]:
    """Paths (relative to *upper*, sorted) the runtime created for *points*; commit excludes them."""
    view = OverlayView([upper, *lowers_top_first])
    image = OverlayView(lowers_top_first)
    excluded: Set[Parts] = set()
    parents: Set[Parts] = set()
    for path, kind in points:
        parts = view.resolve(path)
        if not parts:
            continue
        st = _upper_entry(upper, parts)
        if st is None or not _kind_matches(st, kind):
            continue
        had = image.lookup(parts)
        if had is not None and _kind_matches(had.st, kind):
            continue
        excluded.add(parts)
        parents.update(parts[:depth] for depth in range(1, len(parts)))
    for parent in sorted(parents, key=len, reverse=True):
        _exclude_parent(upper, image, parent, excluded)
    return sorted("/".join(parts) for parts in excluded if not any(parts[:n] in excluded for n in range(1, len(parts))))


def _exclude_parent(upper: str, image: OverlayView, parts: Parts, excluded: Set[Parts]) -> None:
    st = _upper_entry(upper, parts)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return
    path = os.path.join(upper, *parts)
    if is_opaque(path):
        return
    if any((*parts, name) not in excluded for name in os.listdir(path)):
        return
    lower = image.lookup(parts)
    if lower is None or _unchanged_copy_up(path, st, lower):
        excluded.add(parts)
