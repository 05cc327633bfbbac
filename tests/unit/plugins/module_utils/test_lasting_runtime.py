"""Where runtime modules are imported from, when the collection is not run from an AnsiballZ payload."""

import os
import py_compile
from pathlib import Path

from ansible_collections.berth.containers.plugins.module_utils import lasting_runtime, runtime
from ansible_collections.berth.containers.plugins.module_utils.runtime import config


def test_a_runtime_imported_from_a_lasting_place_is_left_as_it_is(tmp_path: Path) -> None:
    path_before = list(runtime.__path__)
    host = config.parse({"data-root": str(tmp_path / "data")})
    os.makedirs(host.data_root)

    assert lasting_runtime.prefer_lasting_copy(host) is True
    assert runtime.__path__ == path_before
    assert os.listdir(host.data_root) == [], "no copy is made of a runtime that lasts already"


def test_compiled_means_every_module_has_its_bytecode(tmp_path: Path) -> None:
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("VALUE = 1\n")
    py_compile.compile(str(tmp_path / "a.py"), doraise=True)
    assert lasting_runtime._compiled(str(tmp_path)) is False
    py_compile.compile(str(tmp_path / "b.py"), doraise=True)
    assert lasting_runtime._compiled(str(tmp_path)) is True
