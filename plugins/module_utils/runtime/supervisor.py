"""Running one container: host resources, the monitor process, clean-up.

A detached container's life, all in one process (the *monitor*, pid M):

1. ``launch`` (in ``berth start``/``run -d`` or a module) prepares the host
   side — cgroup, network namespace and bridge attachment, /etc files — then
   forks; the child calls ``setsid`` and forks again, and that grandchild M
   becomes a child subreaper and starts the container's init as its own
   child (:func:`process.start`).  It records the state, tells ``launch``
   the outcome through a pipe, and ``execve``\\ s the small loop in
   :mod:`monitor` — same pid, same children, about 3 MB.
2. When the container exits, the loop writes ``exit.json`` and execs back
   into :func:`main` here with ``cleanup`` (network, cgroup, state; removal
   for ``--rm``) or ``restart`` (clean up, start again as M's child, exec
   the loop again), following the restart policy.

The heavy code runs from a copy of the runtime that outlives the caller
(:mod:`install`), never from an Ansible module's temporary payload.  A
foreground ``berth run`` does all of this in the CLI process itself
(:func:`run_attached`), which is what keeps ``run --rm`` fast.

The container dies with its supervisor (M, or the CLI of a foreground run):
its init has ``PR_SET_PDEATHSIG=SIGKILL`` relative to the process that
started it, and the death of a pid namespace's init ends every process in
it.  So a killed supervisor never leaves an unobserved container running;
``observe`` reports it exited (137, with the reason) and ``stop``, ``rm`` or
``start`` tear down its network and cgroup.

A run that cannot record its state (a full data root) is undone: the
container is killed and its resources released before the error is
reported.  A ``--rm`` container's overlay is mounted ``volatile`` (its
unmount does not sync the data root's filesystem) and its files are not
fsynced: it does not outlive the host anyway.
"""

import contextlib
import os
import signal
import sys
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import fsutil
from .containers import SUPERVISOR_DIED, Container, Runtime, alive, now_rfc3339, process_start_time
from .errors import BerthError, ContainerError


class RunPlan(NamedTuple):
    """The host-side resources of one run of a container."""

    cgroup: Any
    attachment: Optional[Any]
    netns: Optional[str]
    process_spec: Any


def _resources(spec: Dict[str, Any]) -> Any:
    from .cgroups import Resources

    others = {"memory": spec["memory"], "cpu_shares": spec["cpu_shares"], "pids_limit": spec["pids_limit"]}
    if spec["cpus"]:
        return Resources.from_cpus(spec["cpus"], **others)
    return Resources(**others)


def process_spec(runtime: Runtime, container: Container, network: str, etc_files: Dict[str, str]) -> Any:
    """The :class:`process.ContainerSpec` of a container (also the base of its execs)."""
    from . import userns
    from .process import ContainerSpec
    from .rootfs import Mount, RootfsSpec

    spec, effective, record = container.spec, container.effective, container.record
    lowers = runtime.store.lower_links(list(reversed(record["chain_ids"])))
    mounts = [
        Mount(
            destination=volume["target"],
            type="volume" if volume["type"] == "volume" else "bind",
            source=volume["host_path"],
            read_only=volume["read_only"],
        )
        for volume in record.get("volumes", [])
    ]
    for target, options in sorted(spec["tmpfs"].items()):
        words = tuple(word for word in options.split(",") if word)
        mounts.append(Mount(destination=target, type="tmpfs", options=words or ("mode=1777",)))
    env = list(effective["env"])
    if not any(entry.startswith("HOSTNAME=") for entry in env):
        env.append(f"HOSTNAME={record['hostname']}")
    if effective["systemd"] and not any(entry.startswith("container=") for entry in env):
        env.append("container=berth")
    if spec["tty"] and not any(entry.startswith("TERM=") for entry in env):
        env.append("TERM=xterm")
    return ContainerSpec(
        rootfs=RootfsSpec(
            lowers=tuple(lowers),
            upper=container.path("upper"),
            work=container.path("work"),
            merged=container.path("merged"),
            lower_cwd=runtime.store.links,
            read_only=spec["read_only"],
            volatile=not container.durable,
        ),
        args=list(effective["args"]),
        env=env,
        cwd=effective["working_dir"],
        user=effective["user"],
        hostname=record["hostname"],
        etc_files=etc_files,
        mounts=mounts,
        network=network,
        privileged=spec["privileged"],
        cap_add=list(spec["cap_add"]),
        cap_drop=list(spec["cap_drop"]),
        systemd=effective["systemd"],
        tty=spec["tty"],
        no_new_privs=spec.get("no_new_privileges"),
        userns=userns.resolve(spec["userns"]),
        idmapped_paths=[runtime.store.layers, container.directory]
        + ([runtime.volumes] if any(volume["type"] == "volume" for volume in record.get("volumes", [])) else []),
    )


def _network_module() -> Any:
    from . import network

    return network


def prepare(runtime: Runtime, container: Container) -> RunPlan:
    """Create the cgroup, the network attachment and the /etc files of a new run (rolled back on failure)."""
    from . import process, rootfs
    from .cgroups import Cgroup

    spec = container.spec
    mode = spec["network_mode"]
    network = None if mode in ("host", "none") else _network_module()
    process.SECCOMP_CACHE_DIR = os.path.join(runtime.config.exec_root, "seccomp")
    fsutil.makedirs(container.path("merged"), 0o700)
    if not container.durable:
        # A volatile overlay refuses to mount again over a work dir it marked dirty.
        fsutil.remove_tree(container.path("work/incompat"))
    cgroup = Cgroup.create(container.id, _resources(spec), systemd=container.effective["systemd"])
    attachment = None
    netns = None
    try:
        if mode in ("host", "none"):
            net = mode  # the process set-up makes a namespace with only lo for "none"
        elif mode.startswith("container:"):
            other = runtime.get(mode[len("container:") :])
            state = other.observe()
            if state["status"] != "running":
                raise ContainerError(f"cannot join the network of container {other.name}: it is not running")
            net = (state.get("network") or {}).get("netns") or f"/proc/{state['pid']}/ns/net"
            # Registered as a sharer, so that prune never tears the owner's network down under it.
            attachment = network.connect(container.id, net, mode=f"container:{other.id}", config=runtime.config)
        else:
            netns = network.create_netns(container.id, runtime.config)
            attachment = network.connect(
                container.id,
                netns,
                ports=spec["published_ports"],
                name=container.name,
                aliases=spec["network_aliases"],
                mode=mode,
                exposed_ports=container.effective["exposed_ports"] if spec["publish_all_ports"] else None,
                config=runtime.config,
            )
            net = netns
        etc_files = rootfs.write_etc_files(
            container.path("etc"),
            container.record["hostname"],
            own_network=mode != "host",
            address=attachment.ip if attachment is not None and attachment.ip else None,
            durable=False,
        )
        if attachment is not None and attachment.mode == network.MODE_BRIDGE:
            # The other containers on the bridge by name and alias, and this one in their /etc/hosts.
            network.sync_hosts(container.id, etc_files["/etc/hosts"], runtime.config)
        return RunPlan(cgroup, attachment, netns, process_spec(runtime, container, net, etc_files))
    except BaseException:
        _teardown(runtime, container.id, attachment.to_dict() if attachment else None, netns, cgroup.to_dict())
        raise


def _teardown(
    runtime: Runtime, container_id: str, attachment: Optional[Dict[str, Any]], netns: Optional[str], cgroup: Any
) -> List[str]:
    """Release a run's network and cgroup; every step is attempted, errors are collected."""
    problems = []
    if attachment is not None or netns:
        network = _network_module()
        try:
            network.disconnect(container_id, attachment, config=runtime.config)
        except BerthError as exc:
            problems.append(str(exc))
        if netns:
            try:
                network.delete_netns(netns)
            except (BerthError, OSError) as exc:
                problems.append(str(exc))
    if cgroup:
        from .cgroups import Cgroup

        try:
            group = Cgroup.from_dict(cgroup)
            # Normally empty: the init is dead, and its pid namespace with it.  Stragglers
            # (an exec still setting up) must not keep the cgroup, nor outlive the container.
            group.kill(signal.SIGKILL)
            group.remove()
        except (BerthError, OSError) as exc:
            problems.append(str(exc))
    return problems


def cleanup(
    runtime: Runtime,
    container: Container,
    remove: bool = False,
    exited_pid: Optional[int] = None,
    restarting: bool = False,
    exit_code: Optional[int] = None,
) -> None:
    """Record how the last run ended and release its resources; idempotent.

    With *exited_pid* (the monitor's own call) nothing happens unless the
    recorded run is still that pid's: a newer run started meanwhile keeps
    its network and cgroup.  *restarting* records the run as ending in a
    restart (the monitor starts the next run right after).  *exit_code* is
    the monitor's word for how it ended when ``exit.json`` could not be
    written (a full disk).  The resources are released before the state is
    written, so a full disk cannot keep them.
    """
    state = container.state
    if exited_pid is not None and state.get("pid") != exited_pid:
        return
    if state.get("status") in ("running", "restarting") and alive(state.get("pid"), state.get("pid_start_time")):
        return
    changes: Dict[str, Any] = {}
    if state.get("status") in ("running", "restarting"):
        exit_record = container.exit_record()
        if exit_record and exit_record.get("pid") == state.get("pid"):
            changes.update(
                status="restarting" if restarting else "exited",
                exit_code=exit_record["exit_code"],
                finished_at=exit_record["finished_at"],
                oom_killed=exit_record.get("oom_killed", False),
            )
        elif exit_code is not None:
            changes.update(status="exited", exit_code=exit_code, finished_at=now_rfc3339())
        else:
            changes.update(status="exited", exit_code=137, finished_at=now_rfc3339(), error=SUPERVISOR_DIED)
    attachment = state.get("network")
    # Only a namespace of its own is deleted; a joined one (container:NAME) belongs to its owner.
    own_netns = attachment.get("netns") if attachment and attachment.get("mode") in ("bridge", "none") else None
    problems = _teardown(runtime, container.id, attachment, own_netns, state.get("cgroup"))
    changes.update(network=None, cgroup=None)
    if problems:
        changes["cleanup_error"] = "; ".join(problems)
    removing = (remove or container.record.get("auto_remove")) and not restarting
    try:
        runtime.save_state(container, **changes)
    except OSError:
        if not removing:
            raise
    if removing:
        runtime._delete(container, volumes=True)


# -- the monitor process ----------------------------------------------------------


def _oom_file(cgroup: Any) -> str:
    if cgroup.version == 2:
        return os.path.join(cgroup.directories[""], "memory.events")
    memory = cgroup.directories.get("memory")
    return os.path.join(memory, "memory.oom_control") if memory else ""


def _redirect_stdio_to_devnull() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _close_all_but(keep: Sequence[int]) -> None:
    """Close inherited descriptors (the caller's locks, sockets, pipes) the monitor must not hold."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _undo_start(runtime: Runtime, container: Container, plan: RunPlan, held: Any) -> None:
    """Let go of what a start that failed had taken: held ports, the network, the cgroup."""
    if held is not None:
        held.close()
    _teardown(
        runtime,
        container.id,
        plan.attachment.to_dict() if plan.attachment else None,
        plan.netns,
        plan.cgroup.to_dict(),
    )


def _start_process(
    runtime: Runtime, container: Container, plan: RunPlan, stdin: Optional[int], terminal_of: Optional[int] = None
) -> Tuple[Any, int, Optional[int], Any]:
    """Start the container's process with its output on pipes; ``(started, out_r, err_r, held ports)``.

    *stdin* None reads /dev/null.  A container with a terminal (``-t``) gets
    the slave of a new pty (sized like the caller's terminal *terminal_of*)
    on all three descriptors instead; ``out_r`` is then its master and
    ``err_r`` None.  The published ports are held (bound) before the start
    so a taken port fails it; on any failure they are let go and the
    network and cgroup are torn down again.
    """
    from . import process

    held = None
    out_r = err_r = None
    child_ends: List[int] = []  # closed here once the child has its copies
    try:
        if plan.attachment:
            from .portproxy import hold_published_ports

            held = hold_published_ports(plan.attachment.to_dict())
        if plan.process_spec.tty:
            from .terminal import open_pty

            out_r, slave = open_pty(terminal_of)
            child_ends.append(slave)
            stdio = (slave, slave, slave)
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            child_ends.append(out_w)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            child_ends.append(err_w)
            if stdin is None:
                stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                child_ends.append(stdin)
            stdio = (stdin, out_w, err_w)
        started = process.start(plan.process_spec, plan.cgroup, *stdio)
    except BaseException:
        for fd in (*child_ends, out_r, err_r):
            if fd is not None:
                os.close(fd)
        _undo_start(runtime, container, plan, held)
        raise
    for fd in child_ends:
        os.close(fd)
    return started, out_r, err_r, held


def _stream_options(out_r: int, err_r: Optional[int]) -> Dict[str, str]:
    """The monitor's ``out``/``err`` options (no ``err`` for a terminal, which merges both)."""
    return {"out": str(out_r), **({"err": str(err_r)} if err_r is not None else {})}


def start_in_monitor(runtime: Runtime, container: Container, restarts: int, report_fd: Optional[int]) -> None:
    """In the monitor process M: start a run of the container as M's child, record it, exec the loop.

    Never returns: execs the monitor loop, or exits after reporting an error
    (to *report_fd* when a caller waits for the outcome).
    """
    from . import libc
    from .install import library_path

    try:
        # Before the container starts: a copy that cannot be installed (a full disk) fails the start cleanly.
        lib = library_path(runtime.config)
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        plan = prepare(runtime, container)
        started, out_r, err_r, held = _start_process(runtime, container, plan, stdin=None)
        _record_running(runtime, container, plan, started, restarts, held)
        if report_fd is not None:
            os.write(report_fd, b"ok")
            os.close(report_fd)
    except BaseException as exc:
        message = _failure_message(container, exc)
        if report_fd is not None:
            with contextlib.suppress(OSError):
                os.write(report_fd, b"error\n" + message.encode())
        else:
            with contextlib.suppress(OSError):
                runtime.save_state(container, status="exited", exit_code=125, error=message, network=None, cgroup=None)
        os._exit(1)
    from .portproxy import PortProxy

    if isinstance(held, PortProxy):
        # The userland proxy runs in threads of this process: keep it, run the loop here.
        _supervise_in_process(runtime, container, started.pid, out_r, err_r, plan, restarts, held)
        return
    options = {
        "id": container.id,
        "dir": container.directory,
        "log": container.log_path,
        "pid": str(started.pid),
        **_stream_options(out_r, err_r),
        "restart": container.spec["restart_policy"],
        "restarts": str(restarts),
        "python": sys.executable,
        "lib": lib,
        "config": runtime.config.path or "",
        "oom-file": _oom_file(plan.cgroup),
        "max-size": str(_log_max_size(runtime)),
        "max-file": runtime.config.log_opts.get("max-file", "1"),
        "sync": "1" if container.durable else "0",
    }
    keep = [fd for fd in (out_r, err_r) if fd is not None] + [sock.fileno() for sock in getattr(held, "sockets", [])]
    _close_all_but(keep)
    for fd in keep:
        os.set_inheritable(fd, True)
    # Imported, not run as a script: a script is compiled at every start, and the compiler's
    # memory stays in the heap (about 1 MB of the monitor's 3 MB).  The .pyc is cached.
    entry = "import sys; sys.path.insert(0, sys.argv[1]); from runtime.monitor import main; main(sys.argv[2:])"
    argv = [sys.executable, "-I", "-S", "-c", entry, lib] + [f"{k}={v}" for k, v in options.items()]
    os.execv(sys.executable, argv)


def _failure_message(container: Container, exc: BaseException) -> str:
    if isinstance(exc, BerthError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"cannot start container {container.name}: {exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"


def _record_running(
    runtime: Runtime, container: Container, plan: RunPlan, started: Any, restarts: int, held: Any
) -> None:
    """Write the state of a run that just started; when that fails (a full disk), undo the run and raise."""
    try:
        runtime.save_state(
            container,
            status="running",
            pid=started.pid,
            pid_start_time=started.start_time,
            monitor_pid=os.getpid(),
            monitor_start_time=process_start_time(os.getpid()),
            started_at=now_rfc3339(),
            finished_at=None,
            exit_code=None,
            oom_killed=False,
            error="",
            restart_count=restarts,
            network=plan.attachment.to_dict() if plan.attachment else None,
            cgroup=plan.cgroup.to_dict(),
        )
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.kill(started.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(started.pid, 0)
        _undo_start(runtime, container, plan, held)
        if isinstance(exc, OSError):
            raise ContainerError(
                f"cannot record the state of container {container.name} in {container.directory}: "
                f"{exc.strerror}; the container was stopped"
            ) from None
        raise


def _log_max_size(runtime: Runtime) -> int:
    from .spec import parse_bytes

    return parse_bytes(runtime.config.log_opts.get("max-size"), "log-opts max-size") or 0


def _supervise_in_process(
    runtime: Runtime,
    container: Container,
    pid: int,
    out_r: int,
    err_r: Optional[int],
    plan: RunPlan,
    restarts: int,
    held: Any,
) -> None:
    from . import monitor

    options = {
        "dir": container.directory,
        "log": container.log_path,
        "pid": str(pid),
        **_stream_options(out_r, err_r),
        "oom-file": _oom_file(plan.cgroup),
        "max-size": str(_log_max_size(runtime)),
        "max-file": runtime.config.log_opts.get("max-file", "1"),
        "sync": "1" if container.durable else "0",
    }
    code = monitor.Monitor(options).run()
    held.close()
    _after_exit(runtime, container.id, pid, code, restarts)


def _after_exit(runtime: Runtime, container_id: str, pid: int, code: int, restarts: int) -> None:
    """The monitor's last act for a run: restart per policy, or clean up and exit."""
    from . import monitor

    container = runtime._load(container_id)
    if container is None:
        os._exit(0)
    stop_requested = os.path.exists(container.path("stop-requested"))
    if monitor.should_restart(container.spec["restart_policy"], code, restarts, stop_requested):
        cleanup(runtime, container, exited_pid=pid, restarting=True, exit_code=code)
        fresh = runtime._load(container_id)
        if fresh is not None and not os.path.exists(fresh.path("stop-requested")):
            start_in_monitor(runtime, fresh, restarts + 1, None)
    cleanup(runtime, container, exited_pid=pid, exit_code=code)
    os._exit(0)


def launch(runtime: Runtime, container: Container) -> None:
    """Start *container* detached under its own monitor; raise if the container did not start."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked monitor
        try:
            os.close(report_r)
            os.setsid()
            if os.fork():
                os._exit(0)
            os.chdir("/")  # the monitor must not pin the caller's working directory
            _redirect_stdio_to_devnull()
            _close_all_but([report_w])  # the caller's container lock among them
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            start_in_monitor(runtime, container, 0, report_w)
        finally:
            os._exit(1)
    os.close(report_w)
    os.waitpid(child, 0)
    chunks = []
    while True:
        chunk = os.read(report_r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(report_r)
    report = b"".join(chunks)
    if report != b"ok":
        message = report.partition(b"\n")[2].decode(errors="replace") if report.startswith(b"error") else ""
        raise ContainerError(message or f"the monitor of container {container.name} died while starting it")


def run_attached(runtime: Runtime, container: Container, interactive: bool = False) -> int:
    """``berth run`` without ``-d``: start the container as this process's child and relay its output."""
    from . import monitor

    with runtime.locked(container) as fresh:
        runtime._finish_previous_run(fresh)
        plan = prepare(runtime, fresh)
        stdin = 0 if interactive else None
        started, out_r, err_r, held = _start_process(runtime, fresh, plan, stdin, terminal_of=0 if interactive else 1)
        try:
            _record_running(runtime, fresh, plan, started, 0, held)
        except BaseException:
            for fd in (out_r, err_r):
                if fd is not None:
                    os.close(fd)
            raise
    options = {
        "dir": fresh.directory,
        "log": fresh.log_path,
        "pid": str(started.pid),
        **_stream_options(out_r, err_r),
        "oom-file": _oom_file(plan.cgroup),
        "max-size": str(_log_max_size(runtime)),
        "max-file": runtime.config.log_opts.get("max-file", "1"),
        "sync": "1" if fresh.durable else "0",
    }
    loop = monitor.Monitor(
        options,
        echo={"stdout": 1, "stderr": 2},
        forward_signals=True,
        relay_input=(stdin, out_r) if err_r is None and stdin is not None else None,
    )
    if err_r is None:
        from .terminal import attached

        with attached(out_r, stdin):
            code = loop.run()
    else:
        code = loop.run()
    if held is not None:
        held.close()
    done = runtime._load(fresh.id)
    if done is not None:
        cleanup(runtime, done, exited_pid=started.pid, exit_code=code)
    return code


def main(argv: Sequence[str]) -> None:
    """Entry point the monitor loop execs into: ``[exited=PID:CODE] cleanup|restart ID CONFIG``.

    ``exited=`` is the monitor's own account of the run, used when
    ``exit.json`` could not be written (a full disk).
    """
    from .config import load

    reported_pid = reported_code = None
    if argv and argv[0].startswith("exited="):
        pid_text, _colon, code_text = argv[0][len("exited=") :].partition(":")
        reported_pid, reported_code = int(pid_text), int(code_text)
        argv = argv[1:]
    action, container_id, config_path = argv[0], argv[1], argv[2] if len(argv) > 2 else ""
    runtime = Runtime(load(config_path or None))
    container = runtime._load(container_id)
    if container is None:
        os._exit(0)
    exit_record = container.exit_record() or {}
    pid = exit_record.get("pid") or reported_pid or container.state.get("pid")
    code = reported_code if pid == reported_pid else None
    restarts = container.state.get("restart_count", 0)
    if action == "restart":
        cleanup(runtime, container, exited_pid=pid, restarting=True, exit_code=code)
        fresh = runtime._load(container_id)
        if fresh is not None and not os.path.exists(fresh.path("stop-requested")):
            start_in_monitor(runtime, fresh, restarts + 1, None)
        os._exit(0)
    cleanup(runtime, container, exited_pid=pid, exit_code=code)
    os._exit(0)
