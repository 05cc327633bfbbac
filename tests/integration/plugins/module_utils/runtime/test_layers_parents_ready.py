"""Unpacking a layer before its parents are complete (``parents_ready``), as a pull does for the layers above the base.

The upper layer is applied first; its ``parents_ready`` callback writes the
parent layers only then (so nothing of them existed while the upper one was
unpacked), and the result must be exactly what the sequential order gives.
Root: other owners, trusted xattrs and whiteout devices.
"""

import os
import stat
from typing import Callable, List

import pytest
from support.layertar import TarBuilder
from support.trees import compare, snapshot

from ansible_collections.berth.containers.plugins.module_utils.runtime import layers
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import LayerError


def lower_tar() -> TarBuilder:
    return (
        TarBuilder()
        .dir(".", mode=0o711, uid=7, gid=7)
        .dir("usr", mode=0o750, uid=5, gid=6, xattrs={"user.origin": b"lower", "trusted.note": b"t"})
        .dir("usr/share", mode=0o700, uid=9, gid=9)
        .dir("opt", mode=0o700, uid=3, gid=3)
        .dir("d", mode=0o770, uid=2, gid=2, xattrs={"user.old": b"1"})
    )


def middle_tar() -> TarBuilder:
    return TarBuilder().whiteout("usr/share").dir("opt", mode=0o701, uid=4, gid=4).opaque("opt")


def top_tar() -> TarBuilder:
    return (
        TarBuilder()
        .file("usr/share/doc/f", b"x")
        .file("usr/local/bin/x", b"y")
        .file("opt/a/b", b"z")
        .file("d/f", b"w")
        .dir("d", mode=0o700, uid=1, gid=1, xattrs={"user.new": b"2"})
        .file("gone/child", b"c")
        .file("gone", b"now a file")
    )


def apply(tar: TarBuilder, dest: str, parents: List[str], **kwargs: object) -> layers.LayerStats:
    os.makedirs(dest, exist_ok=True)
    return layers.apply_layer(tar.stream(), dest, parents, **kwargs)  # type: ignore[arg-type]


def sequential(base: str) -> str:
    lower, middle, top = (os.path.join(base, name) for name in ("lower", "middle", "top"))
    apply(lower_tar(), lower, [])
    apply(middle_tar(), middle, [lower])
    apply(top_tar(), top, [middle, lower])
    return top


def test_the_upper_layer_first_gives_the_same_tree_as_in_order(tmp_path) -> None:
    expected = snapshot(sequential(str(tmp_path / "in-order")))
    base = str(tmp_path / "upper-first")
    lower, middle, top = (os.path.join(base, name) for name in ("lower", "middle", "top"))
    seen_when_ready: List[bool] = []

    def parents_ready() -> None:
        seen_when_ready.append(os.path.exists(os.path.join(top, "usr/local/bin/x")))
        assert not os.path.exists(lower), "the parents must not exist before the upper layer asked for them"
        apply(lower_tar(), lower, [])
        apply(middle_tar(), middle, [lower])

    apply(top_tar(), top, [middle, lower], parents_ready=parents_ready)
    assert seen_when_ready == [True]  # called once, after every entry was written
    assert compare(snapshot(top), expected) == []
    usr = os.stat(os.path.join(top, "usr"))
    assert (stat.S_IMODE(usr.st_mode), usr.st_uid, usr.st_gid) == (0o750, 5, 6)
    assert os.getxattr(os.path.join(top, "usr"), "trusted.note") == b"t"
    opt = os.stat(os.path.join(top, "opt"))
    assert (stat.S_IMODE(opt.st_mode), opt.st_uid) == (0o701, 4)  # the middle layer's, above the opaque whiteout
    for fresh in ("usr/share", "usr/share/doc", "usr/local", "opt/a"):
        st = os.stat(os.path.join(top, fresh))
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0), fresh
    d = os.stat(os.path.join(top, "d"))
    assert (stat.S_IMODE(d.st_mode), d.st_uid) == (0o700, 1)  # the explicit entry, never the parent's
    assert sorted(os.listxattr(os.path.join(top, "d"))) == ["user.new"]
    assert os.path.isfile(os.path.join(top, "gone"))
    root = os.stat(top)
    assert (stat.S_IMODE(root.st_mode), root.st_uid) == (0o711, 7)


def test_an_explicit_root_entry_is_not_overridden_by_the_parents(tmp_path) -> None:
    lower, top = str(tmp_path / "lower"), str(tmp_path / "top")

    def ready() -> None:
        apply(lower_tar(), lower, [])

    apply(TarBuilder().dir(".", mode=0o755, uid=0, gid=0).file("usr/x", b"1"), top, [lower], parents_ready=ready)
    root = os.stat(top)
    assert (stat.S_IMODE(root.st_mode), root.st_uid) == (0o755, 0)
    assert stat.S_IMODE(os.stat(os.path.join(top, "usr")).st_mode) == 0o750


def failing(message: str) -> Callable[[], None]:
    def ready() -> None:
        raise LayerError(message)

    return ready


def test_parents_that_failed_fail_the_layer_before_it_takes_any_attribute(tmp_path) -> None:
    lower, top = str(tmp_path / "lower"), str(tmp_path / "top")
    apply(lower_tar(), lower, [])
    with pytest.raises(LayerError, match="the layer below broke"):
        apply(top_tar(), top, [lower], parents_ready=failing("the layer below broke"))
    assert stat.S_IMODE(os.stat(os.path.join(top, "usr")).st_mode) == 0o700  # still the placeholder
    assert "user.origin" not in os.listxattr(os.path.join(top, "usr"))


def test_apply_compressed_passes_parents_ready_through(tmp_path) -> None:
    import gzip

    lower, top = str(tmp_path / "lower"), str(tmp_path / "top")
    blob = tmp_path / "top.tar.gz"
    blob.write_bytes(gzip.compress(TarBuilder().file("usr/x", b"1").stream().getvalue()))
    calls: List[str] = []

    def ready() -> None:
        calls.append("ready")
        apply(lower_tar(), lower, [])

    os.makedirs(top)
    layers.apply_compressed(str(blob), top, [lower], parents_ready=ready)
    assert calls == ["ready"]
    usr = os.stat(os.path.join(top, "usr"))
    assert (stat.S_IMODE(usr.st_mode), usr.st_uid, usr.st_gid) == (0o750, 5, 6)
