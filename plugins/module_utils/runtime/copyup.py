"""Docker's volume copy-up: an empty volume takes the image's content at its mount point.

When a volume (named or anonymous, never a bind mount) is mounted over a
directory of the image and the volume is empty, Docker first copies that
directory's content, ownership and mode into it, so an image's ``VOLUME``
keeps the files the image put there.  This runs in the container's set-up
child before the volume is mounted, where imports are already closed: what
it calls is imported with this module.

The source is a directory descriptor resolved *inside* the container's root
(:func:`rootfs.open_in_root`) and everything below it is opened relative to
its parent with ``O_NOFOLLOW``: symlinks are copied as links, never
followed, so an image cannot make the copy read a host file.  Hard links
inside the tree stay hard links; device nodes and FIFOs are recreated;
ownership, modes, times and extended attributes (but overlayfs' own) are
kept.
"""

import errno
import os
import stat
from typing import Dict, Tuple

from .layerfs import remove_at

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_CHUNK = 1 << 20


def populate_empty_volume(image_dir: int, volume_dir: int) -> bool:
    """Copy the directory *image_dir* into *volume_dir* if the volume is empty; True when it was.

    Both are directory descriptors opened for reading.  A volume holding
    anything is left alone (its content is the user's).
    """
    if os.listdir(volume_dir):
        return False
    try:
        _copy_children(image_dir, volume_dir, volume_dir, "", {})
        _copy_metadata(image_dir, volume_dir, os.fstat(image_dir))
    except BaseException:
        for name in os.listdir(volume_dir):  # empty again: the next start copies afresh instead of keeping half
            remove_at(volume_dir, name)
        raise
    return True


def _copy_children(
    source: int, target: int, volume_root: int, relative: str, links: Dict[Tuple[int, int], str]
) -> None:
    for name in sorted(os.listdir(source)):
        info = os.stat(name, dir_fd=source, follow_symlinks=False)
        path = f"{relative}/{name}" if relative else name
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=target)
            child_source = os.open(name, _DIR_FLAGS, dir_fd=source)
            try:
                child_target = os.open(name, _DIR_FLAGS, dir_fd=target)
                try:
                    _copy_children(child_source, child_target, volume_root, path, links)
                    _copy_metadata(child_source, child_target, info)
                finally:
                    os.close(child_target)
            finally:
                os.close(child_source)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=target)
            os.chown(name, info.st_uid, info.st_gid, dir_fd=target, follow_symlinks=False)
            os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=target, follow_symlinks=False)
        elif stat.S_ISREG(mode):
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and key in links:
                os.link(links[key], name, src_dir_fd=volume_root, dst_dir_fd=target, follow_symlinks=False)
                continue
            _copy_file(source, target, name, info)
            if info.st_nlink > 1:
                links[key] = path
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, info.st_rdev, dir_fd=target)
            node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=target)
            try:
                os.chown(f"/proc/self/fd/{node}", info.st_uid, info.st_gid)
                os.chmod(f"/proc/self/fd/{node}", stat.S_IMODE(mode))
            finally:
                os.close(node)
            os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=target, follow_symlinks=False)
        # sockets are not content: Docker skips them too


def _copy_file(source: int, target: int, name: str, info: os.stat_result) -> None:
    reader = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source)
    try:
        writer = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=target
        )
        try:
            _copy_data(reader, writer, info.st_size)
            _copy_metadata(reader, writer, info)
        finally:
            os.close(writer)
    finally:
        os.close(reader)


def _copy_data(reader: int, writer: int, size: int) -> None:
    copied = 0
    while copied < size:
        try:
            done = os.copy_file_range(reader, writer, min(_CHUNK, size - copied))
        except OSError as exc:
            if copied or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            break  # no copy_file_range between these filesystems: plain reads and writes
        if done == 0:
            return
        copied += done
    else:
        return
    for chunk in iter(lambda: os.read(reader, _CHUNK), b""):
        view = memoryview(chunk)
        while view:
            view = view[os.write(writer, view) :]


def _copy_metadata(source_fd: int, target_fd: int, info: os.stat_result) -> None:
    """Owner, mode (after the owner: chown clears set-id bits), xattrs and times of an open file or dir."""
    os.fchown(target_fd, info.st_uid, info.st_gid)
    os.fchmod(target_fd, stat.S_IMODE(info.st_mode))
    try:
        names = os.listxattr(source_fd)
    except OSError:
        names = []
    for name in names:
        if name.startswith(_OVERLAY_XATTRS):
            continue
        try:
            os.setxattr(target_fd, name, os.getxattr(source_fd, name))
        except OSError:
            pass  # a namespace the volume's filesystem does not take
    os.utime(target_fd, ns=(info.st_atime_ns, info.st_mtime_ns))
