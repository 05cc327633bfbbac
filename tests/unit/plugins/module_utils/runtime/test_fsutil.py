"""Atomic writes: durable by default, and without fsync when asked."""

import os

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import fsutil


@pytest.mark.parametrize(("durable", "syncs"), [(True, 2), (False, 0)])
def test_write_atomic_fsyncs_file_and_directory_only_when_durable(tmp_path, monkeypatch, durable, syncs) -> None:
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    target = tmp_path / "state.json"
    target.write_text("old")
    fsutil.write_json_atomic(str(target), {"b": 1, "a": [2]}, 0o640, durable=durable)
    assert target.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert target.stat().st_mode & 0o777 == 0o640
    assert len(calls) == syncs
    assert [entry.name for entry in tmp_path.iterdir()] == ["state.json"], "no temporary file is left"


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        fsutil.write_atomic(str(target), "not bytes", durable=False)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["state.json"]
