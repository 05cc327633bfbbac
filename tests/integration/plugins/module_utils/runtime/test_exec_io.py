"""exec_io with a real container: the direct exec and the helper a multi-threaded caller gets give the same results.

``Runtime.exec`` forks, so exec_io sends a caller that has threads through a
fresh helper process.  Each test runs once from this (single-threaded)
process and once with an extra thread alive, and checks which path was taken.
"""

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from support.berth_env import BerthEnv
from support.isolation import wait_single_threaded

from ansible_collections.berth.containers.plugins.module_utils.runtime import exec_io
from ansible_collections.berth.containers.plugins.module_utils.runtime.cgroups import Cgroup
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ContainerError


@contextlib.contextmanager
def threads(extra: bool) -> Iterator[None]:
    """With *extra*, one more thread lives in this process while the block runs."""
    if not extra:
        wait_single_threaded()  # a server thread of an earlier test may still be closing its connection
        assert exec_io.thread_count() == 1, "the test process itself must be single-threaded"
        yield
        return
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=True)
    worker.start()
    try:
        yield
    finally:
        release.set()
        worker.join()


@pytest.fixture(scope="module")
def box(host: BerthEnv) -> Iterator[str]:
    name = f"execio-{os.urandom(3).hex()}"
    host.berth("run", "-d", "--name", name, "-e", "FROM_IMAGE=container", "busybox", "sleep", "600")
    yield name
    host.berth("rm", "-f", name)


def container_pids(host: BerthEnv, name: str) -> list:
    state = host.runtime().get(name).observe()
    return Cgroup.from_dict(state["cgroup"]).pids()


@pytest.mark.parametrize("threaded", [False, True], ids=["direct", "helper"])
def test_output_exit_code_user_env_and_cwd(host: BerthEnv, box: str, threaded: bool) -> None:
    runtime = host.runtime()
    container = runtime.get(box)
    request = exec_io.ExecRequest(
        ["sh", "-c", 'id -u; echo "$FROM_IMAGE $EXTRA"; pwd; echo err >&2; exit 5'],
        env=["EXTRA=added"],
        cwd="/opt/app",
        user="berth",
    )
    with threads(threaded):
        process = exec_io.ExecProcess.start(runtime, container, request)
        assert process.helper is threaded
        result = process.communicate()
    assert (result.exit_code, result.stdout, result.stderr) == (5, b"1000\ncontainer added\n/opt/app\n", b"err\n")


@pytest.mark.parametrize("threaded", [False, True], ids=["direct", "helper"])
def test_large_input_streams_through_and_back(host: BerthEnv, box: str, threaded: bool) -> None:
    runtime = host.runtime()
    container = runtime.get(box)
    data = os.urandom(20 * 1024 * 1024)
    work = Path(tempfile.mkdtemp(prefix="berth-execio-", dir="/var/tmp"))
    source = work / "source"
    source.write_bytes(data)
    back = work / "back"
    with threads(threaded), contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work)
        with source.open("rb") as reader:
            written = exec_io.run(
                runtime, container, exec_io.ExecRequest(["sh", "-c", "cat > /tmp/copy"]), stdin=reader
            )
        with back.open("wb") as writer:
            read = exec_io.run(runtime, container, exec_io.ExecRequest(["cat", "/tmp/copy"]), stdout_sink=writer)
        assert (written.exit_code, read.exit_code) == (0, 0)
        assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("threaded", [False, True], ids=["direct", "helper"])
def test_a_missing_command_is_127_with_the_reason(host: BerthEnv, box: str, threaded: bool) -> None:
    runtime = host.runtime()
    with threads(threaded):
        result = exec_io.run(runtime, runtime.get(box), exec_io.ExecRequest(["no-such-program"]))
    assert result.exit_code == 127
    assert b'"no-such-program": executable file not found in $PATH' in result.stderr


@pytest.mark.parametrize("threaded", [False, True], ids=["direct", "helper"])
def test_an_unknown_user_is_a_clear_error(host: BerthEnv, box: str, threaded: bool) -> None:
    runtime = host.runtime()
    with threads(threaded), pytest.raises(ContainerError, match="unable to find user nobody-here"):
        exec_io.run(runtime, runtime.get(box), exec_io.ExecRequest(["true"], user="nobody-here"))


@pytest.mark.parametrize("threaded", [False, True], ids=["direct", "helper"])
def test_a_timeout_leaves_no_process_in_the_container(host: BerthEnv, box: str, threaded: bool) -> None:
    runtime = host.runtime()
    before = container_pids(host, box)
    with threads(threaded), pytest.raises(ContainerError, match="did not finish within 1 seconds"):
        exec_io.run(runtime, runtime.get(box), exec_io.ExecRequest(["sleep", "300"]), timeout=1)
    deadline = time.monotonic() + 10
    while container_pids(host, box) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert container_pids(host, box) == before
