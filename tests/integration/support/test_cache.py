"""The fixture build cache: built once, atomic, locked across processes, pruned when stale."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Dict, List

import pytest
from support import cache

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "0123456789abcdef"


def _child(root: str, body: str) -> subprocess.Popen:
    """A separate process that calls ``cache.cached`` with the build *body* (Python statements on ``work``)."""
    code = "\n".join(
        [
            "import os, time",
            "from support import cache",
            "def build(work):",
            textwrap.indent(body, "    "),
            "    return {}",
            f"print(cache.cached('thing', {KEY!r}, build, root={root!r}), flush=True)",
        ]
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=TESTS_DIR, stdout=subprocess.PIPE, text=True, env={**os.environ}
    )


def test_built_once_then_reused(tmp_path: object) -> None:
    calls: List[str] = []

    def build(work: str) -> Dict[str, object]:
        calls.append(work)
        with open(os.path.join(work, "payload"), "w", encoding="ascii") as handle:
            handle.write("made")
        return {"answer": 42}

    root = str(tmp_path)
    first = cache.cached("thing", KEY, build, root=root)
    second = cache.cached("thing", KEY, build, root=root)
    assert first == second == os.path.join(root, f"thing-{KEY}")
    assert len(calls) == 1
    assert calls[0] != first, "the build happens in a temporary directory"
    info = cache.build_info(first)
    assert info["answer"] == 42
    assert info["key"] == KEY
    assert isinstance(info["build_seconds"], float)


def test_a_failed_build_leaves_nothing(tmp_path: object) -> None:
    def build(work: str) -> Dict[str, object]:
        with open(os.path.join(work, "half"), "w", encoding="ascii") as handle:
            handle.write("half")
        raise RuntimeError("apt failed")

    root = str(tmp_path)
    with pytest.raises(RuntimeError, match="apt failed"):
        cache.cached("thing", KEY, build, root=root)
    assert sorted(os.listdir(root)) == [".locks"]


def test_a_killed_build_leaves_no_entry_and_the_next_build_cleans_up(tmp_path: object) -> None:
    root = str(tmp_path)
    child = _child(root, 'open(os.path.join(work, "started"), "w").close()\ntime.sleep(60)')
    deadline = time.monotonic() + 20
    while not any(name.startswith(".tmp-thing-") for name in os.listdir(root)) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    leftovers = [n for n in os.listdir(root) if n.startswith(".tmp-thing-")]
    assert len(leftovers) == 1
    assert not os.path.exists(os.path.join(root, f"thing-{KEY}"))
    built = cache.cached("thing", KEY, lambda work: {}, root=root)
    assert os.path.isdir(built)
    assert not any(n.startswith(".tmp-thing-") for n in os.listdir(root))


def test_two_processes_build_once(tmp_path: object) -> None:
    root = str(tmp_path)
    counter = os.path.join(root, "builds")
    body = f'with open({counter!r}, "a") as h:\n    h.write("x")\ntime.sleep(0.5)'
    children = [_child(root, body), _child(root, body)]
    outputs = [c.communicate(timeout=60)[0].strip() for c in children]
    assert [c.returncode for c in children] == [0, 0]
    assert outputs[0] == outputs[1] == os.path.join(root, f"thing-{KEY}")
    with open(counter, encoding="ascii") as handle:
        assert handle.read() == "x"


def test_prune_removes_only_stale_entries_of_the_same_name(tmp_path: object) -> None:
    root = str(tmp_path)
    stale = cache.cached("thing", "1" * 16, lambda work: {}, root=root)
    recent = cache.cached("thing", "2" * 16, lambda work: {}, root=root)
    other = cache.cached("thing-other", "3" * 16, lambda work: {}, root=root)
    three_days_ago = time.time() - 3 * 24 * 3600
    for entry in (stale, other):
        os.utime(os.path.join(entry, cache.LAST_USED), (three_days_ago, three_days_ago))
    current = cache.cached("thing", KEY, lambda work: {}, root=root)
    assert not os.path.exists(stale)
    assert os.path.isdir(recent)
    assert os.path.isdir(other), "a name that only shares a prefix is another recipe"
    assert os.path.isdir(current)


def test_recipe_key_depends_on_every_part() -> None:
    assert cache.recipe_key("a", "bc") != cache.recipe_key("ab", "c")
    assert cache.recipe_key("a", b"b") == cache.recipe_key("a", "b")
    assert len(cache.recipe_key("x")) == 16
