"""The per-container supervisor loop: logs, reaping, exit status, restart decisions.

One monitor process runs per detached container for as long as the container
does, so its memory is paid once per container.  It therefore imports only
modules that are built into the interpreter and already loaded at start-up
(``posix``, ``_signal``, ``select``, ``time``, ``errno``, ``_json``) and no
sibling module.  It is imported (``python3 -I -S -c "...from runtime.monitor
import main..."``), never run as a script: a script is compiled at every
start and the compiler leaves about 1 MB in the heap.  Measured on Python
3.11: 2.6 MB PSS imported from its .pyc, 3.7 MB run as a script, 4.3 MB with
``os``, ``signal`` and ``json`` imported.

The process that runs this loop is the container's parent and a child
subreaper.  The heavy work — starting the container, restarting it, tearing
down its network and cgroup — happens in the same process *before* it execs
this file, or after it execs the heavy entry point again (``supervisor.py``):
``execve`` keeps the pid, the children and the subreaper flag.

Files written in the container directory:

* ``<id>-json.log`` — Docker's json-file format, one object per line;
* ``exit.json`` — written atomically once the container exited:
  ``{"pid", "exit_code", "finished_at", "oom_killed", "log_dropped"}``
  (fsynced unless ``sync=0``: a ``--rm`` container's record dies with the host).

A full disk never stops the loop: a log record that cannot be written is
dropped whole (a torn line is cut off again) and counted in ``log_dropped``;
an ``exit.json`` that cannot be written leaves the exit code to the command
line of the clean-up this process execs into.

A ``stop-requested`` file in the container directory (written by ``berth
stop`` before it signals the container) tells the loop not to apply the
restart policy.
"""

import _json
import _signal
import errno
import posix
import select
import sys
import time

# Docker's log copier splits lines longer than this into partial messages.
MAX_LINE = 16 * 1024
READ_SIZE = 64 * 1024


def rfc3339(ns: int) -> str:
    """UTC timestamp with nanoseconds, as Docker writes in json-file logs."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{fraction:09d}Z"


def encode_record(text: bytes, stream: str, ns: int) -> bytes:
    log = _json.encode_basestring_ascii(text.decode("utf-8", "replace"))
    return f'{{"log":{log},"stream":"{stream}","time":"{rfc3339(ns)}"}}\n'.encode()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = posix.write(fd, view)
        except InterruptedError:
            continue
        view = view[written:]


def write_file_atomic(path: str, data: bytes, durable: bool = True) -> None:
    tmp = path + ".tmp"
    fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data)
        if durable:
            posix.fsync(fd)
    except OSError:
        posix.close(fd)
        try:
            posix.unlink(tmp)
        except OSError:
            pass
        raise
    posix.close(fd)
    posix.rename(tmp, path)


def exists(path: str) -> bool:
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def read_small(path: str) -> bytes:
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return posix.read(fd, 65536)
    finally:
        posix.close(fd)


def oom_kills(path: str) -> int:
    """The ``oom_kill`` counter of a cgroup's memory.events / memory.oom_control file."""
    for line in read_small(path).splitlines() if path else ():
        parts = line.split()
        if len(parts) == 2 and parts[0] == b"oom_kill":
            return int(parts[1])
    return 0


class LogWriter:
    """Appends json-file records, rotating by size like Docker's max-size/max-file."""

    def __init__(self, path: str, max_size: int, max_files: int) -> None:
        self.path = path
        self.max_size = max_size
        self.max_files = max(1, max_files)
        self.fd = -1
        self.size = 0
        self.dropped = 0
        self.open()

    def open(self) -> None:
        self.fd = posix.open(self.path, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_CLOEXEC, 0o600)
        self.size = posix.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1

    def rotate(self) -> None:
        posix.close(self.fd)
        for number in range(self.max_files - 1, 0, -1):
            source = self.path if number == 1 else f"{self.path}.{number - 1}"
            if exists(source):
                posix.rename(source, f"{self.path}.{number}")
        if self.max_files == 1:
            posix.truncate(self.path, 0)
        self.open()

    def write(self, record: bytes) -> None:
        """Append one record, or drop it whole when the disk refuses it (ENOSPC, EDQUOT, EIO)."""
        try:
            if self.max_size and self.size + len(record) > self.max_size and self.size:
                self.rotate()
            write_all(self.fd, record)
        except OSError:
            self.dropped += 1
            try:
                posix.ftruncate(self.fd, self.size)  # no torn line for the readers
            except OSError:
                pass
            return
        self.size += len(record)


class Stream:
    """One of the container's output pipes, split into lines."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self.pending = b""

    def feed(self, data: bytes, log: LogWriter) -> None:
        now = time.time_ns()
        buffer = self.pending + data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            while end + 1 - start > MAX_LINE:
                log.write(encode_record(buffer[start : start + MAX_LINE], self.name, now))
                start += MAX_LINE
            log.write(encode_record(buffer[start : end + 1], self.name, now))
            start = end + 1
        rest = buffer[start:]
        while len(rest) >= MAX_LINE:
            log.write(encode_record(rest[:MAX_LINE], self.name, now))
            rest = rest[MAX_LINE:]
        self.pending = rest

    def flush(self, log: LogWriter) -> None:
        if self.pending:
            log.write(encode_record(self.pending, self.name, time.time_ns()))
            self.pending = b""


def exit_code_of(status: int) -> int:
    """Docker's convention: the exit status, or 128 + the signal that killed it."""
    code = posix.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Monitor:
    """Relays a container's output into its log until it exits, then records the exit.

    *echo* (stream name -> fd) also copies the raw output there,
    *forward_signals* passes SIGINT/SIGTERM/SIGHUP on to the container, and
    *relay_input* ``(source, target)`` copies keystrokes into the container's
    terminal: all for a foreground ``berth run``, where the CLI process is
    the monitor.  A container with a terminal has one output stream (no
    ``err`` option): the terminal merges stdout and stderr.
    """

    def __init__(
        self,
        options: dict,
        echo: "dict | None" = None,
        forward_signals: bool = False,
        relay_input: "tuple | None" = None,
    ) -> None:
        self.options = options
        self.echo = echo or {}
        self.forward_signals = forward_signals
        self.relay_input = relay_input
        self.directory = options["dir"]
        self.pid = int(options["pid"])
        self.log = LogWriter(options["log"], int(options.get("max-size", "0")), int(options.get("max-file", "1")))
        self.streams = [Stream(int(options["out"]), "stdout")]
        if options.get("err"):
            self.streams.append(Stream(int(options["err"]), "stderr"))
        self.status = None
        self.oom_before = oom_kills(options.get("oom-file", ""))
        self.recorded = False

    def forward(self, signum: int, frame: object) -> None:
        if self.status is None:
            try:
                posix.kill(self.pid, signum)
            except OSError:
                pass

    def reap(self) -> None:
        while True:
            try:
                pid, status = posix.waitpid(-1, posix.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status

    def run(self) -> int:
        wake_read, wake_write = posix.pipe()
        for fd in (wake_read, wake_write):
            posix.set_blocking(fd, False)
        _signal.set_wakeup_fd(wake_write)
        _signal.signal(_signal.SIGCHLD, lambda signum, frame: None)
        for signum in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
            _signal.signal(signum, self.forward if self.forward_signals else _signal.SIG_IGN)
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        poller = select.poll()
        poller.register(wake_read, select.POLLIN)
        open_streams = {}
        for stream in self.streams:
            poller.register(stream.fd, select.POLLIN)
            open_streams[stream.fd] = stream
        source, target = self.relay_input or (None, None)
        if source is not None:
            poller.register(source, select.POLLIN)
        self.reap()
        drain_deadline = None
        while open_streams or self.status is None:
            if self.status is not None and drain_deadline is None:
                # Whatever still holds the pipes after the container's init died (it
                # passed them to a process outside its pid namespace) gets a moment.
                drain_deadline = time.monotonic() + 2.0
            timeout = None if drain_deadline is None else max(0, int((drain_deadline - time.monotonic()) * 1000))
            if drain_deadline is not None and timeout == 0:
                break
            try:
                events = poller.poll(timeout)
            except InterruptedError:
                events = []
            for fd, _event in events:
                if fd == wake_read:
                    try:
                        while posix.read(wake_read, 512):
                            pass
                    except BlockingIOError:
                        pass
                    self.reap()
                    continue
                if fd == source:
                    if not self.relay(source, target):
                        poller.unregister(source)
                        source = None
                    continue
                stream = open_streams.get(fd)
                if stream is None:
                    continue
                try:
                    data = posix.read(fd, READ_SIZE)
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    data = b""
                if data:
                    stream.feed(data, self.log)
                    if stream.name in self.echo:
                        try:
                            write_all(self.echo[stream.name], data)
                        except OSError:
                            del self.echo[stream.name]
                else:
                    stream.flush(self.log)
                    poller.unregister(fd)
                    posix.close(fd)
                    del open_streams[fd]
            if self.status is None and not events:
                self.reap()
        for stream in open_streams.values():
            stream.flush(self.log)
            posix.close(stream.fd)
        _signal.set_wakeup_fd(-1)
        posix.close(wake_read)
        posix.close(wake_write)
        if self.status is None:
            self.wait_for_container()
        code = self.finish()
        self.log.close()
        return code

    @staticmethod
    def relay(source: int, target: int) -> bool:
        """Copy what *source* has into *target*; False once either end is done."""
        try:
            data = posix.read(source, READ_SIZE)
            if data:
                write_all(target, data)
        except InterruptedError:
            return True
        except OSError:
            return False
        return bool(data)

    def wait_for_container(self) -> None:
        while self.status is None:
            try:
                pid, status = posix.waitpid(-1, 0)
            except ChildProcessError:
                self.status = 255 << 8
                return
            if pid == self.pid:
                self.status = status

    def finish(self) -> int:
        """Record the exit in ``exit.json`` (``recorded`` says whether that worked); return the exit code."""
        code = exit_code_of(self.status)
        oom = oom_kills(self.options.get("oom-file", "")) > self.oom_before
        finished = _json.encode_basestring_ascii(rfc3339(time.time_ns()))
        record = (
            f'{{"exit_code": {code}, "finished_at": {finished}, "log_dropped": {self.log.dropped}, '
            f'"oom_killed": {"true" if oom else "false"}, "pid": {self.pid}}}\n'
        )
        try:
            write_file_atomic(self.directory + "/exit.json", record.encode(), self.options.get("sync", "1") != "0")
            self.recorded = True
        except OSError:
            self.recorded = False
        return code


def should_restart(policy: str, exit_code: int, restarts: int, stop_requested: bool) -> bool:
    """Docker's restart policies: no, always, unless-stopped, on-failure[:max-retries]."""
    if stop_requested or policy in ("", "no"):
        return False
    if policy in ("always", "unless-stopped"):
        return True
    name, _colon, limit = policy.partition(":")
    if name == "on-failure":
        return exit_code != 0 and (not limit or restarts < int(limit))
    return False


def restart_delay(restarts: int) -> float:
    """Docker's back-off: 100 ms doubling per consecutive restart, at most one minute."""
    return min(0.1 * (2**restarts), 60.0)


def parse_options(argv: list) -> dict:
    return dict(arg.split("=", 1) for arg in argv)


def main(argv: list) -> None:
    options = parse_options(argv)
    code = Monitor(options).run()
    stop_requested = exists(options["dir"] + "/stop-requested")
    restarts = int(options.get("restarts", "0"))
    action = "cleanup"
    if should_restart(options.get("restart", "no"), code, restarts, stop_requested):
        time.sleep(restart_delay(restarts))
        if not exists(options["dir"] + "/stop-requested"):
            action = "restart"
    # Back to the heavy entry point (same pid, children and subreaper flag).
    python = options["python"]
    entry = "import sys; sys.path.insert(0, sys.argv[1]); from runtime.supervisor import main; main(sys.argv[2:])"
    account = f"exited={options['pid']}:{code}"
    posix.execv(
        python, [python, "-I", "-c", entry, options["lib"], account, action, options["id"], options.get("config", "")]
    )


if __name__ == "__main__":
    main(sys.argv[1:])
