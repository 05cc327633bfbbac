"""layerfs helpers that need no root: the top-of-tree directory flag (ext4's Orlov allocator)."""

import os
import subprocess
from typing import Optional

from ansible_collections.berth.containers.plugins.module_utils.runtime import layerfs
from ansible_collections.berth.containers.plugins.module_utils.runtime.store import Store


def lsattr_flags(path: str) -> Optional[str]:
    """The flags ``lsattr -d`` shows (an independent oracle), or None where the filesystem has none."""
    result = subprocess.run(["lsattr", "-d", path], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.split()[0]


def test_mark_top_directory_sets_the_flag_where_the_filesystem_has_it(tmp_path: str) -> None:
    target = os.path.join(str(tmp_path), "layers")
    os.mkdir(target)
    before = lsattr_flags(target)
    marked = layerfs.mark_top_directory(target)
    after = lsattr_flags(target)
    if before is None:  # tmpfs and friends: no flags at all
        assert marked is False
    else:
        assert "T" not in before
        assert marked is True
        assert after is not None
        assert "T" in after
        assert after.replace("T", "-") == before  # no other flag touched
        assert layerfs.mark_top_directory(target) is True  # already set: still fine


def test_mark_top_directory_is_best_effort() -> None:
    assert layerfs.mark_top_directory("/proc/self") is False  # procfs has no such flag
    assert layerfs.mark_top_directory("/nonexistent/berth/dir") is False


def test_store_marks_its_layers_directory(tmp_path: str) -> None:
    store = Store(os.path.join(str(tmp_path), "data")).ensure()
    flags = lsattr_flags(store.layers)
    if flags is not None:
        assert "T" in flags
    blob_flags = lsattr_flags(store.blobs)
    assert blob_flags is None or "T" not in blob_flags  # only layers/: each entry there is a tree of its own
