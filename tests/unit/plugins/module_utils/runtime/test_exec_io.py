"""exec_io: the pipes around an exec, exercised with ordinary host processes (no container, no root).

A stand-in runtime starts the process with ``posix_spawn`` on exactly the
descriptors :meth:`ExecProcess.start` hands to ``Runtime.exec``; everything
after that (feeding, draining, streaming, reaping, killing) is the real code.
"""

import io
import os
import signal
import threading
from pathlib import Path
from typing import Any, List, Optional, Sequence

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import exec_io
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ContainerError
from ansible_collections.berth.containers.plugins.module_utils.runtime.process import ExecFailed


class HostRuntime:
    """Runs the "exec" on the host, with the given stdio as fds 0-2 of the child."""

    def __init__(self) -> None:
        self.calls: List[dict] = []

    def exec(self, container: Any, args: Sequence[str], stdio: Sequence[int] = (0, 1, 2), **options: Any) -> int:
        self.calls.append({"container": container, "args": list(args), **options})
        if args[0] == "missing-command":
            raise ExecFailed('exec: "missing-command": executable file not found in $PATH', 127)
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
        return os.posix_spawnp(args[0], list(args), dict(os.environ), file_actions=actions)


@pytest.fixture(autouse=True)
def single_threaded(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in runtime is called in-process; a test runner's own threads must not send it to the helper."""
    if request.node.name != "test_thread_count_sees_other_threads":
        monkeypatch.setattr(exec_io, "thread_count", lambda: 1)


def start(argv: List[str], stdin_fd: Optional[int] = None) -> exec_io.ExecProcess:
    return exec_io.ExecProcess.start(HostRuntime(), "container", exec_io.ExecRequest(argv), stdin_fd)


def assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_exit_codes_follow_docker() -> None:
    assert exec_io.exit_code_of(0) == 0
    assert exec_io.exit_code_of(3 << 8) == 3
    assert exec_io.exit_code_of(signal.SIGKILL) == 128 + signal.SIGKILL


def test_stdout_stderr_and_the_exit_code_are_kept_apart() -> None:
    process = start(["sh", "-c", "echo out; echo err >&2; exit 7"])
    result = process.communicate()
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert_reaped(process.pid)


def test_a_process_killed_by_a_signal_reports_128_plus_the_signal() -> None:
    result = start(["sh", "-c", "kill -TERM $$"]).communicate()
    assert result.exit_code == 128 + signal.SIGTERM


def test_input_and_output_larger_than_any_pipe_flow_at_the_same_time() -> None:
    data = os.urandom(8 * 1024 * 1024)
    result = start(["cat"]).communicate(data)
    assert result.exit_code == 0
    assert result.stdout == data


def test_a_file_is_streamed_in_and_output_is_streamed_out(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(os.urandom(3 * exec_io.CHUNK + 123))
    sink = tmp_path / "sink"
    with source.open("rb") as reader, sink.open("wb") as writer:
        result = start(["cat"]).communicate(reader, stdout_sink=writer)
    assert result.exit_code == 0
    assert result.stdout == b"", "streamed output is not also kept in memory"
    assert sink.read_bytes() == source.read_bytes()


def test_no_input_means_end_of_file_at_once() -> None:
    result = start(["sh", "-c", "cat; echo done"]).communicate()
    assert result.stdout == b"done\n"


def test_a_process_that_does_not_read_its_input_still_gives_its_exit_code() -> None:
    result = start(["sh", "-c", "exec 0<&-; echo ignored; exit 3"]).communicate(b"x" * (4 * 1024 * 1024))
    assert (result.exit_code, result.stdout) == (3, b"ignored\n")


def test_a_timeout_kills_and_reaps_the_process() -> None:
    process = start(["sleep", "30"])
    with pytest.raises(ContainerError, match=r"did not finish within 0\.2 seconds"):
        process.communicate(timeout=0.2)
    assert process.exit_code == 128 + signal.SIGKILL
    assert_reaped(process.pid)


def test_a_prompt_is_answered_before_the_rest_of_the_input() -> None:
    script = 'printf "Password: " >&2; read -r secret; echo "got $secret"; cat'
    process = start(["sh", "-c", script])
    seen = b""
    while b"Password:" not in seen and process.output_open:
        _out, err = process.read_output(5)
        seen += err
    assert seen == b"Password: "
    process.write_stdin(b"s3cret\n")
    result = process.communicate(b"module source\n")
    assert result.stdout == b"got s3cret\nmodule source\n"


def test_the_caller_can_supply_stdin_itself() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"from the caller\n")
    os.close(write_end)
    try:
        process = start(["cat"], stdin_fd=read_end)
    finally:
        os.close(read_end)
    assert process.stdin is None
    assert process.communicate().stdout == b"from the caller\n"


def test_child_ends_are_closed_so_end_of_file_arrives() -> None:
    before = set(os.listdir("/proc/self/fd"))
    result = start(["true"]).communicate()
    assert result.exit_code == 0
    assert set(os.listdir("/proc/self/fd")) == before, "no descriptor is left open by an exec"


def test_a_command_that_cannot_start_gives_docker_codes_and_the_reason_on_stderr() -> None:
    result = exec_io.run(HostRuntime(), "container", exec_io.ExecRequest(["missing-command"]))
    assert result.exit_code == 127
    assert result.stderr == b'exec: "missing-command": executable file not found in $PATH\n'
    sink = io.BytesIO()
    streamed = exec_io.run(HostRuntime(), "c", exec_io.ExecRequest(["missing-command"]), stderr_sink=sink)
    assert (streamed.exit_code, streamed.stderr) == (127, b"")
    assert b"executable file not found" in sink.getvalue()


def test_the_request_reaches_the_runtime() -> None:
    runtime = HostRuntime()
    request = exec_io.ExecRequest(["true"], env=["A=1"], cwd="/tmp", user="nobody", privileged=True)
    exec_io.run(runtime, "web", request)
    assert runtime.calls == [
        {"container": "web", "args": ["true"], "env": ["A=1"], "cwd": "/tmp", "user": "nobody", "tty": False,
         "privileged": True},
    ]  # fmt: skip


def test_thread_count_sees_other_threads() -> None:
    assert exec_io.thread_count() >= 1
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        assert exec_io.thread_count() >= 2
    finally:
        release.set()
        worker.join()
