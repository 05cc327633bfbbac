"""Run a process in a running container and exchange data with it through pipes.

:meth:`Runtime.exec` starts the process with the descriptors it is given;
this module owns the pipes around it: it feeds stdin from bytes or from a
file (streamed in chunks, so size is never a limit), collects stdout and
stderr into memory or streams them into files, and reaps the process.  The
``container_exec`` module and the ``berth`` connection plugin both use it.

``Runtime.exec`` forks and must be called from a single-threaded process
(see :mod:`.process`).  :meth:`ExecProcess.start` checks that, and from a
multi-threaded caller it starts a *helper*: a fresh interpreter that makes
the exec and waits for it, with the same pipes, so callers never need to care.

Exit codes follow Docker: the process's exit status, or 128 + the number of
the signal that killed it; 126 when the command cannot be invoked and 127
when it does not exist (then stderr says why).
"""

import contextlib
import fcntl
import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple, Union

from .errors import ContainerError

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
HELPER_ENV = "BERTH_EXEC_HELPER_REQUEST"

Source = Union[None, bytes, IO[bytes]]


@dataclass
class Completed:
    """The outcome of an exec: Docker's exit code and the output that was not streamed elsewhere."""

    exit_code: int
    stdout: bytes
    stderr: bytes


def exit_code_of(status: int) -> int:
    """A wait status as Docker reports it: the exit status, or 128 + the signal number."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _enlarge(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)


def _pipe() -> Tuple[int, int]:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    _enlarge(write_fd)
    return read_fd, write_fd


@dataclass
class ExecRequest:
    """What to run: the arguments of :meth:`Runtime.exec` other than the container and the descriptors."""

    args: List[str]
    env: Optional[List[str]] = None
    cwd: Optional[str] = None
    user: Optional[str] = None
    privileged: bool = False
    tty: bool = False

    def to_json(self) -> Dict[str, Any]:
        return {
            "args": self.args,
            "env": self.env,
            "cwd": self.cwd,
            "user": self.user,
            "privileged": self.privileged,
            "tty": self.tty,
        }


class ExecProcess:
    """A process running in a container, with the caller's ends of its stdin, stdout and stderr pipes.

    ``stdin`` is ``None`` when the caller supplied the process's stdin
    itself (a pty, /dev/null).  The pid is a child of the caller: every path
    out of :meth:`communicate` / :meth:`wait` reaps it.
    """

    def __init__(self, pid: int, stdin: Optional[int], stdout: int, stderr: int, helper: bool = False) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.helper = helper
        self.exit_code: Optional[int] = None
        self._open = {stdout: True, stderr: True}
        self._closed = False

    # -- start -------------------------------------------------------------------------
    @classmethod
    def start(cls, runtime: Any, container: Any, request: ExecRequest, stdin_fd: Optional[int] = None) -> "ExecProcess":
        """Start *request* in *container*; *stdin_fd* (kept by the caller) replaces the stdin pipe."""
        child_fds: List[int] = []
        own_fds: List[int] = []
        try:
            if stdin_fd is None:
                stdin_read, stdin_write = _pipe()
                child_fds.append(stdin_read)
                own_fds.append(stdin_write)
            else:
                stdin_read, stdin_write = stdin_fd, -1
            stdout_read, stdout_write = _pipe()
            stderr_read, stderr_write = _pipe()
            child_fds += [stdout_write, stderr_write]
            own_fds += [stdout_read, stderr_read]
            stdio = (stdin_read, stdout_write, stderr_write)
            if thread_count() > 1:
                pid, helper = _start_helper(runtime, container, request, stdio), True
            else:
                pid = runtime.exec(
                    container,
                    request.args,
                    env=request.env,
                    cwd=request.cwd,
                    user=request.user,
                    tty=request.tty,
                    privileged=request.privileged,
                    stdio=stdio,
                )
                helper = False
        except BaseException:
            for fd in own_fds:
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        return cls(pid, None if stdin_fd is not None else stdin_write, stdout_read, stderr_read, helper)

    # -- talking to it -------------------------------------------------------------------
    @property
    def output_open(self) -> bool:
        """Whether stdout or stderr may still bring data."""
        return any(self._open.values())

    def write_stdin(self, data: bytes) -> None:
        """Write all of *data* to stdin now (for short answers such as a password)."""
        if self.stdin is None:
            raise ContainerError("this exec has no stdin pipe")
        view = memoryview(data)
        while view:
            view = view[os.write(self.stdin, view) :]

    def read_output(self, timeout: float) -> Tuple[bytes, bytes]:
        """What stdout and stderr bring within *timeout* seconds (both empty on a timeout or at the end)."""
        chunks = {self.stdout: b"", self.stderr: b""}
        with selectors.DefaultSelector() as selector:
            for fd, is_open in self._open.items():
                if is_open:
                    selector.register(fd, selectors.EVENT_READ)
            if not selector.get_map():
                return b"", b""
            for key, _events in selector.select(max(0.0, timeout)):
                data = os.read(key.fd, CHUNK)
                if data:
                    chunks[key.fd] = data
                else:
                    self._open[key.fd] = False
        return chunks[self.stdout], chunks[self.stderr]

    def communicate(
        self,
        stdin: Source = None,
        stdout_sink: Optional[IO[bytes]] = None,
        stderr_sink: Optional[IO[bytes]] = None,
        timeout: Optional[float] = None,
    ) -> Completed:
        """Feed *stdin* (bytes or a binary file, then EOF), drain the output, reap; the process's outcome.

        Output goes to the sinks when given (streamed, never held in memory),
        else into :attr:`Completed.stdout` / :attr:`Completed.stderr`.  After
        *timeout* seconds the process is killed and :class:`ContainerError`
        raised.
        """
        collected = {self.stdout: bytearray(), self.stderr: bytearray()}
        sinks = {self.stdout: stdout_sink, self.stderr: stderr_sink}
        feeder = _Feeder(stdin) if self.stdin is not None else None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with selectors.DefaultSelector() as selector:
                if feeder is not None and self.stdin is not None:
                    if feeder.done:
                        self._close_stdin()
                    else:
                        os.set_blocking(self.stdin, False)
                        selector.register(self.stdin, selectors.EVENT_WRITE)
                for fd, is_open in self._open.items():
                    if is_open:
                        selector.register(fd, selectors.EVENT_READ)
                while selector.get_map():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise ContainerError(f"the command did not finish within {timeout} seconds; it was killed")
                    for key, _events in selector.select(remaining):
                        if key.fd == self.stdin and feeder is not None:
                            if feeder.write_to(key.fd):
                                selector.unregister(key.fd)
                                self._close_stdin()
                            continue
                        data = os.read(key.fd, CHUNK)
                        if not data:
                            selector.unregister(key.fd)
                            self._open[key.fd] = False
                            continue
                        sink = sinks[key.fd]
                        if sink is not None:
                            sink.write(data)
                        else:
                            collected[key.fd] += data
        except BaseException:
            self.kill()
            raise
        finally:
            self._close_stdin()
            if feeder is not None:
                feeder.close()
        code = self.wait()
        return Completed(code, bytes(collected[self.stdout]), bytes(collected[self.stderr]))

    def _close_stdin(self) -> None:
        if self.stdin is not None:
            with contextlib.suppress(OSError):
                os.close(self.stdin)
            self.stdin = None

    def wait(self) -> int:
        """Reap the process (closing the caller's pipe ends); its exit code."""
        self._close_stdin()
        if not self._closed:
            self._closed = True
            for fd in (self.stdout, self.stderr):
                os.close(fd)
            self._open = dict.fromkeys(self._open, False)
        if self.exit_code is None:
            try:
                _pid, status = os.waitpid(self.pid, 0)
                self.exit_code = exit_code_of(status)
            except ChildProcessError:
                self.exit_code = 255
        return self.exit_code

    def kill(self) -> None:
        """Kill the process (and, for a helper, the exec it made) and reap it."""
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 15 if self.helper else 9)
        self.wait()


class _Feeder:
    """Writes bytes or a file's content to a non-blocking pipe, as fast as the reader takes it."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.pending = memoryview(source) if isinstance(source, (bytes, bytearray)) else memoryview(b"")
        self.at_eof = not hasattr(source, "read")

    @property
    def done(self) -> bool:
        return self.at_eof and not self.pending

    def write_to(self, fd: int) -> bool:
        """Write what the pipe takes; True once everything was written."""
        while True:
            if not self.pending and not self.at_eof:
                chunk = self.source.read(CHUNK)  # type: ignore[union-attr]
                if chunk:
                    self.pending = memoryview(chunk)
                else:
                    self.at_eof = True
            if self.done:
                return True
            try:
                written = os.write(fd, self.pending)
            except BlockingIOError:
                return False
            except BrokenPipeError:
                # The process stopped reading (it exited or closed stdin): what it did is in its exit code.
                self.pending = memoryview(b"")
                self.at_eof = True
                return True
            self.pending = self.pending[written:]

    def close(self) -> None:
        self.pending = memoryview(b"")


def run(
    runtime: Any,
    container: Any,
    request: ExecRequest,
    stdin: Source = None,
    stdout_sink: Optional[IO[bytes]] = None,
    stderr_sink: Optional[IO[bytes]] = None,
    timeout: Optional[float] = None,
) -> Completed:
    """Start *request* in *container*, feed it *stdin*, collect or stream its output, reap it.

    A command that cannot be started (not found, not executable) gives
    Docker's 127/126 with the reason on stderr, like a shell would; other
    failures to start raise :class:`ContainerError`.
    """
    from .process import ExecFailed

    try:
        process = ExecProcess.start(runtime, container, request)
    except ExecFailed as exc:
        message = (str(exc) + "\n").encode()
        if stderr_sink is not None:
            stderr_sink.write(message)
            message = b""
        return Completed(exc.exit_code, b"", message)
    return process.communicate(stdin, stdout_sink, stderr_sink, timeout)


# -- the helper for multi-threaded callers -------------------------------------------------------
# The helper imports these very files as the top-level package ``runtime``, like bin/berth and the monitor.
_HELPER_CODE = (
    "import sys\nsys.path.insert(0, sys.argv[1])\nfrom runtime.exec_io import helper_main\nsys.exit(helper_main())\n"
)


def _start_helper(runtime: Any, container: Any, request: ExecRequest, stdio: Sequence[int]) -> int:
    """Start a fresh interpreter that makes the exec with *stdio* as its fds 0-2 and exits with its code."""
    library = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    payload = {"config": runtime.config.path, "container": container.id, "request": request.to_json()}
    env = dict(os.environ)
    env[HELPER_ENV] = json.dumps(payload)
    status_read, status_write = os.pipe2(os.O_CLOEXEC)
    env["BERTH_EXEC_HELPER_STATUS_FD"] = str(status_write)
    try:
        helper = subprocess.Popen(
            [sys.executable, "-I", "-c", _HELPER_CODE, library],
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            env=env,
            pass_fds=(status_write,),
            close_fds=True,
        )
    finally:
        os.close(status_write)
    try:
        with os.fdopen(status_read, "rb") as status:
            report = status.read()
    except BaseException:
        helper.kill()
        helper.wait()
        raise
    if report:
        # The exec could not be made: the helper exits at once, with the reason in its report.
        helper.wait()
        failure = json.loads(report)
        from .process import ExecFailed

        if failure.get("exit_code") in (126, 127):
            raise ExecFailed(failure["message"], failure["exit_code"])
        raise ContainerError(failure["message"])
    # Popen keeps no claim on the pid: the caller reaps it with waitpid like a direct exec.
    helper.returncode = 0
    return helper.pid


def helper_main() -> int:
    """Body of the helper process: exec, report a failure to start, wait, exit with the exec's code."""
    from . import config as config_module
    from .containers import Runtime
    from .errors import BerthError

    payload = json.loads(os.environ.pop(HELPER_ENV))
    status_fd = int(os.environ.pop("BERTH_EXEC_HELPER_STATUS_FD"))
    request = payload["request"]
    try:
        runtime = Runtime(config_module.load(payload["config"]))
        container = runtime.get(payload["container"])
        pid = runtime.exec(
            container,
            request["args"],
            env=request["env"],
            cwd=request["cwd"],
            user=request["user"],
            tty=request["tty"],
            privileged=request["privileged"],
            stdio=(0, 1, 2),
        )
    except BerthError as exc:
        with os.fdopen(status_fd, "wb") as status:
            status.write(json.dumps({"message": str(exc), "exit_code": getattr(exc, "exit_code", 125)}).encode())
        return 125
    os.close(status_fd)
    for fd in (0, 1, 2):
        # The exec holds its own copies; the helper must not keep the caller's pipes open.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, fd)
        os.close(null)
    return _forward_signals_and_wait(pid)


def _forward_signals_and_wait(pid: int) -> int:
    import signal

    def forward(number: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if number == signal.SIGTERM else number)

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, forward)
    while True:
        try:
            _pid, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return exit_code_of(status)
