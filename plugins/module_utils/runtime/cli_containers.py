"""The container commands of ``berth``: run, create, start, stop, ps, logs, exec..."""

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional

from .cli import _print_json, _pull, _registry_options, _runtime, command, echo
from .errors import BerthError, InvalidArgument, StateError

# -- helpers ------------------------------------------------------------------------------


def _spec_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    from . import spec

    options: Dict[str, Any] = {
        "image": args.image,
        "command": list(args.command) or None,
        "entrypoint": [args.entrypoint] if args.entrypoint is not None else None,
        "env": _env_list(args.env),
        "env_file": args.env_file or [],
        "working_dir": args.workdir,
        "user": args.user,
        "hostname": args.hostname,
        "labels": dict(label.partition("=")[::2] for label in args.label),
        "volumes": args.volume,
        "tmpfs": args.tmpfs,
        "memory": args.memory,
        "cpus": args.cpus,
        "cpu_shares": args.cpu_shares,
        "pids_limit": args.pids_limit,
        "network_mode": args.network,
        "published_ports": args.publish,
        "publish_all_ports": args.publish_all,
        "network_aliases": args.network_alias,
        "restart_policy": args.restart,
        "privileged": args.privileged,
        "userns": args.userns,
        "cap_add": args.cap_add,
        "cap_drop": args.cap_drop,
        "read_only": args.read_only,
        "systemd": args.systemd,
        "stop_signal": args.stop_signal,
        "stop_timeout": args.stop_timeout,
        "tty": args.tty,
        "interactive": args.interactive,
        "no_new_privileges": _no_new_privileges(args.security_opt),
    }
    return spec.normalize(options)


def _no_new_privileges(options: List[str]) -> Optional[bool]:
    """``--security-opt no-new-privileges[=true|false]``, the one security option Berth takes."""
    result: Optional[bool] = None
    for option in options:
        name, sep, value = option.replace(":", "=", 1).partition("=")
        if name != "no-new-privileges":
            raise InvalidArgument(f"--security-opt {option}: only no-new-privileges[=true|false] is supported")
        result = True if not sep else value.lower() in ("true", "1", "yes")
    return result


def _env_list(entries: List[str]) -> List[str]:
    """``-e KEY=VALUE``, and ``-e KEY`` taking the caller's value like Docker."""
    result = []
    for entry in entries:
        if "=" in entry:
            result.append(entry)
        elif entry in os.environ:
            result.append(f"{entry}={os.environ[entry]}")
    return result


def _ensure_image(args: argparse.Namespace, runtime: Any, name: str) -> None:
    policy = getattr(args, "pull", "missing")
    if policy == "never":
        runtime.images.get(name)
        return
    if policy == "missing" and runtime.images.find(name) is not None:
        return
    from .reference import parse as parse_reference

    if policy == "missing":
        echo(f"Unable to find image '{parse_reference(name).familiar}' locally", file=sys.stderr)
    _pull(args, name, quiet=True)


def _create(args: argparse.Namespace) -> Any:
    runtime = _runtime(args)
    options = _spec_from_args(args)
    _ensure_image(args, runtime, options["image"])
    container = runtime.create(options, name=args.name, auto_remove=args.rm)
    if container.spec["restart_policy"] not in ("", "no"):  # a fresh container of policy "no" has no unit
        runtime.ensure_boot_unit(container.name, container.spec["restart_policy"])
    return runtime, container


def _status_text(state: Dict[str, Any], now: float) -> str:
    from .display import ago, human_duration, parse_timestamp

    status = state.get("status")
    if status == "running":
        started = parse_timestamp(state.get("started_at") or "") or now
        return "Up " + human_duration(now - started)
    if status == "restarting":
        return f"Restarting ({state.get('exit_code', 0)}) {ago(state.get('finished_at') or '', now)}"
    if status == "exited":
        return f"Exited ({state.get('exit_code', 0)}) {ago(state.get('finished_at') or '', now)}".rstrip()
    return "Created"


def _for_each(args: argparse.Namespace, names: List[str], action: Any) -> int:
    runtime = _runtime(args)
    status = 0
    for name in names:
        try:
            action(runtime, runtime.get(name))
            echo(name)
        except BerthError as exc:
            echo(f"Error response: {exc}", file=sys.stderr)
            status = 1
    return status


# -- commands ---------------------------------------------------------------------------------


@command("create")
def cmd_create(args: argparse.Namespace) -> int:
    container = _create(args)[1]
    echo(container.id)
    return 0


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    runtime, container = _create(args)
    if args.detach:
        try:
            runtime.start(container)
        except (BerthError, OSError):
            if args.rm:
                runtime.remove(container, force=True)
            raise
        echo(container.id)
        return 0
    from .supervisor import run_attached

    try:
        code = run_attached(runtime, container, interactive=args.interactive)
    except (BerthError, OSError):
        if args.rm:
            leftover = runtime.find(container.id)
            if leftover is not None:
                runtime.remove(leftover, force=True)
        raise
    return code


@command("start")
def cmd_start(args: argparse.Namespace) -> int:
    if args.boot:
        return _for_each(args, args.containers, _start_at_boot)
    return _for_each(args, args.containers, lambda runtime, container: runtime.start(container))


def _start_at_boot(runtime: Any, container: Any) -> None:
    """What the boot unit runs: Docker's restart policies applied to a host start."""
    policy = container.spec["restart_policy"].partition(":")[0]
    stopped_by_user = os.path.exists(container.path("stop-requested"))
    was_running = container.state.get("status") in ("running", "restarting")
    if (
        policy == "always"
        or (policy == "unless-stopped" and not stopped_by_user)
        or (policy == "on-failure" and was_running)
    ):
        runtime.start(container)


@command("stop")
def cmd_stop(args: argparse.Namespace) -> int:
    return _for_each(args, args.containers, lambda runtime, container: runtime.stop(container, args.time, args.signal))


@command("restart")
def cmd_restart(args: argparse.Namespace) -> int:
    return _for_each(args, args.containers, lambda runtime, container: runtime.restart(container, args.time))


@command("kill")
def cmd_kill(args: argparse.Namespace) -> int:
    return _for_each(args, args.containers, lambda runtime, container: runtime.kill(container, args.signal))


@command("rm")
def cmd_rm(args: argparse.Namespace) -> int:
    return _for_each(
        args, args.containers, lambda runtime, container: runtime.remove(container, args.force, args.volumes)
    )


@command("ps")
def cmd_ps(args: argparse.Namespace) -> int:
    from .display import ago, table, truncate

    now = time.time()
    rows = []
    for container in _runtime(args).list():
        state = container.observe()
        if not args.all and state["status"] not in ("running", "restarting"):
            continue
        identifier = container.id if args.no_trunc else container.id[:12]
        if args.quiet:
            rows.append([identifier])
            continue
        command_text = " ".join(container.effective["args"])
        command_text = f'"{command_text if args.no_trunc else truncate(command_text, 20)}"'
        ports = ""
        if state.get("network") and state["status"] in ("running", "restarting"):
            from .network import Attachment

            ports = Attachment.from_dict(state["network"]).ports_summary()
        image = container.record["image"]
        from .reference import parse as parse_reference

        image = parse_reference(image).familiar
        rows.append(
            [
                identifier,
                image,
                command_text,
                ago(container.record["created"], now),
                _status_text(state, now),
                ports,
                container.name,
            ]
        )
    if args.quiet:
        for row in rows:
            echo(row[0])
        return 0
    table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows)
    return 0


@command("logs")
def cmd_logs(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    container = runtime.get(args.container)
    tail = None if args.tail in (None, "all") else int(args.tail)
    records = []
    for path in runtime.log_files(container):
        with open(path, encoding="utf-8") as handle:
            records.extend(handle.readlines())
    if tail is not None:
        records = records[-tail:] if tail else []
    for line in records:
        _print_log_line(line, args.timestamps)
    if not args.follow:
        return 0
    path = container.log_path
    position = os.path.getsize(path) if os.path.exists(path) else 0
    pending = ""
    while True:
        if os.path.exists(path):
            size = os.path.getsize(path)
            if size < position:  # rotated
                position = 0
            if size > position:
                with open(path, encoding="utf-8") as handle:
                    handle.seek(position)
                    chunk = handle.read()
                    position = handle.tell()
                pending += chunk
                *complete, pending = pending.split("\n")
                for line in complete:
                    _print_log_line(line, args.timestamps)
                continue
        fresh = runtime.find(container.id)
        if fresh is None or fresh.observe()["status"] not in ("running", "restarting"):
            return 0
        time.sleep(0.2)


def _print_log_line(line: str, timestamps: bool) -> None:
    if not line.strip():
        return
    try:
        record = json.loads(line)
    except ValueError:
        return  # a record cut short (a full disk); the monitor drops such records whole
    out = sys.stdout if record.get("stream") == "stdout" else sys.stderr
    if timestamps:
        out.write(record.get("time", "") + " ")
    out.write(record.get("log", ""))
    out.flush()


@command("exec")
def cmd_exec(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    container = runtime.get(args.container)
    if not args.command:
        raise InvalidArgument("exec needs a command to run in the container")
    stdin = 0 if args.interactive else os.open(os.devnull, os.O_RDONLY)
    stdio = (stdin, 1, 2)
    tty = args.tty and not args.detach
    if tty:
        from .terminal import open_pty_in

        state = container.observe()
        if state["status"] != "running":
            raise StateError(f"container {container.name} is not running")
        master, slave = open_pty_in(state["pid"], 0 if args.interactive else 1)
        stdio = (slave, slave, slave)
    pid = runtime.exec(
        container,
        args.command,
        env=_env_list(args.env) or None,
        cwd=args.workdir,
        user=args.user,
        tty=tty,
        privileged=args.privileged,
        stdio=stdio,
    )
    if args.detach:
        return 0
    if tty:
        from .terminal import attached, relay

        os.close(slave)
        keys = 0 if args.interactive else None
        with attached(master, keys):
            relay(master, keys, 1)
    status = os.waitpid(pid, 0)[1]
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


@command("port")
def cmd_port(args: argparse.Namespace) -> int:
    from .network import Attachment

    container = _runtime(args).get(args.container)
    state = container.observe()
    if not state.get("network") or state["status"] != "running":
        return 0
    for port in Attachment.from_dict(state["network"]).ports:
        key = f"{port.container_port}/{port.protocol}"
        if args.port and args.port not in (key, str(port.container_port)):
            continue
        echo(f"{key} -> {port.host_ip or '0.0.0.0'}:{port.host_port}")
    return 0


@command("top")
def cmd_top(args: argparse.Namespace) -> int:
    from .cgroups import Cgroup
    from .display import table

    container = _runtime(args).get(args.container)
    state = container.observe()
    if state["status"] != "running" or not state.get("cgroup"):
        raise InvalidArgument(f"container {container.name} is not running")
    rows = []
    for pid in sorted(Cgroup.from_dict(state["cgroup"]).pids()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
                uid = next(line.split()[1] for line in handle if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        rows.append([uid, str(pid), cmdline])
    table(["UID", "PID", "CMD"], rows)
    return 0


@command("stats")
def cmd_stats(args: argparse.Namespace) -> int:
    from .cgroups import Cgroup
    from .display import human_size, table

    runtime = _runtime(args)
    containers = [runtime.get(name) for name in args.containers] if args.containers else runtime.list()
    rows = []
    for container in containers:
        state = container.observe()
        if state["status"] != "running" or not state.get("cgroup"):
            continue
        stats = Cgroup.from_dict(state["cgroup"]).stats()
        limit = container.spec["memory"]
        rows.append(
            [
                container.id[:12],
                container.name,
                human_size(stats.memory_usage or 0),
                human_size(limit) if limit else "-",
                f"{(stats.cpu_usage_ns or 0) / 1e9:.2f}s",
                str(stats.pids or 0),
            ]
        )
    table(["CONTAINER ID", "NAME", "MEM USAGE", "LIMIT", "CPU TIME", "PIDS"], rows)
    return 0


# `berth network prune` reports by kind: "removed lease ID", "removed netns ID".
PRUNED_KINDS = {"leases": "lease", "veths": "veth", "rules": "rule", "netns": "netns"}


@command("network")
def cmd_network(args: argparse.Namespace) -> int:
    from . import network

    runtime = _runtime(args)
    if args.action == "ls":
        info = network.info(runtime.config)
        from .display import table

        row = [info["bridge"], "bridge", info["subnet"], info["gateway"], info["backend"], str(info["containers"])]
        table(["NAME", "DRIVER", "SUBNET", "GATEWAY", "BACKEND", "CONTAINERS"], [row])
        return 0
    if args.action == "inspect":
        _print_json([network.inspect(runtime.config)])
        return 0
    live = [container.id for container in runtime.list() if container.running]
    removed = network.prune(live, runtime.config)
    for kind, items in sorted(removed.items()):
        for item in items:
            echo(f"removed {PRUNED_KINDS.get(kind, kind)} {item}")
    return 0


@command("info")
def cmd_info(args: argparse.Namespace) -> int:
    from . import cgroups, network, seccomp, userns

    runtime = _runtime(args)
    containers = runtime.list()
    running = sum(1 for container in containers if container.running)
    layout = cgroups.host_layout()
    net = network.info(runtime.config)
    lines = [
        f"Containers: {len(containers)}",
        f" Running: {running}",
        f" Stopped: {len(containers) - running}",
        f"Images: {len(runtime.store.images())}",
        "Storage Driver: overlay (layers in overlay form, one directory per ChainID)",
        f"Berth Root Dir: {runtime.config.data_root}",
        f"Cgroup Version: {layout.version}",
        f"Seccomp: {seccomp.status()}",
        f"User Namespaces: {userns.status()}",
        *network.info_lines(net),
        f"Registry Mirrors: {', '.join(m + '/' for m in runtime.config.registry_mirrors) or '-'}",
        f"Insecure Registries: {', '.join(('127.0.0.0/8', *runtime.config.insecure_registries))}",
        f"Config: {runtime.config.path}",
    ]
    echo("\n".join(lines))
    return 0


# -- parser -----------------------------------------------------------------------------------


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--help", action="help", help="show this help message and exit")
    parser.add_argument("--name", help="assign a name to the container")
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("-e", "--env", action="append", default=[], help="set an environment variable KEY=VALUE")
    parser.add_argument("--env-file", action="append", default=[], help="read environment variables from a file")
    parser.add_argument("-v", "--volume", action="append", default=[], help="bind mount or volume SRC:DEST[:ro]")
    parser.add_argument("--tmpfs", action="append", default=[], help="mount a tmpfs DEST[:OPTIONS]")
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("-u", "--user", help="user name or UID[:GID]")
    parser.add_argument("--entrypoint", help="overwrite the image's entrypoint")
    parser.add_argument("-m", "--memory", help="memory limit (e.g. 64m)")
    parser.add_argument("--cpus", help="number of CPUs (e.g. 0.5)")
    parser.add_argument("--cpu-shares", help="relative CPU weight")
    parser.add_argument("--pids-limit", help="maximum number of processes")
    parser.add_argument("--network", "--net", default="bridge", help="bridge, host, none or container:NAME")
    parser.add_argument("--network-alias", action="append", default=[], help="another name on the bridge")
    parser.add_argument("-p", "--publish", action="append", default=[], help="publish a port [IP:]HOST:CONTAINER[/udp]")
    parser.add_argument("-P", "--publish-all", action="store_true", help="publish all exposed ports")
    parser.add_argument("-h", "--hostname", help="container host name")
    parser.add_argument("--restart", default="no", help="no, always, unless-stopped, on-failure[:N]")
    parser.add_argument("--privileged", action="store_true", help="give the container extended privileges")
    parser.add_argument(
        "--userns", default="host", help="user namespace: host, auto or HOST_UID[:HOST_GID[:SIZE]] for the root"
    )
    parser.add_argument("--cap-add", action="append", default=[], help="add a Linux capability")
    parser.add_argument("--cap-drop", action="append", default=[], help="drop a Linux capability")
    parser.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    parser.add_argument(
        "--security-opt",
        action="append",
        default=[],
        help="no-new-privileges[=true|false] (default on, except for systemd containers)",
    )
    parser.add_argument("-l", "--label", action="append", default=[], help="set a label KEY=VALUE")
    parser.add_argument("--stop-signal", help="signal to stop the container")
    parser.add_argument("--stop-timeout", help="seconds to wait before killing")
    parser.add_argument("--systemd", default="auto", help="true, false or auto (systemd as PID 1)")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    parser.add_argument("--pull", default="missing", choices=("missing", "always", "never"), help="pull policy")
    from .cli import _add_registry_options

    _add_registry_options(parser)
    parser.add_argument("image")
    parser.add_argument("command", nargs=argparse.REMAINDER)


def add_container_commands(sub: Any) -> None:
    p = sub.add_parser("run", help="create and start a container", add_help=False)
    p.add_argument("-d", "--detach", action="store_true", help="run in the background and print the id")
    _add_run_options(p)

    p = sub.add_parser("create", help="create a container", add_help=False)
    _add_run_options(p)

    for name, text in (("start", "start containers"), ("rm", "remove containers")):
        p = sub.add_parser(name, help=text)
        p.add_argument("containers", nargs="+")
        if name == "start":
            p.add_argument("--boot", action="store_true", help="apply the restart policy, as at boot (systemd units)")
        if name == "rm":
            p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
            p.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes too")

    for name, text in (("stop", "stop containers"), ("restart", "restart containers")):
        p = sub.add_parser(name, help=text)
        p.add_argument("containers", nargs="+")
        p.add_argument("-t", "--time", type=int, help="seconds to wait before killing")
        if name == "stop":
            p.add_argument("-s", "--signal", help="signal to send instead of the stop signal")

    p = sub.add_parser("kill", help="send a signal to containers")
    p.add_argument("containers", nargs="+")
    p.add_argument("-s", "--signal", default="SIGKILL")

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    p.add_argument("-q", "--quiet", action="store_true", help="only show ids")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")

    p = sub.add_parser("logs", help="show a container's output")
    p.add_argument("container")
    p.add_argument("-f", "--follow", action="store_true", help="follow the output")
    p.add_argument("-n", "--tail", help="number of lines from the end (or all)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = sub.add_parser("port", help="list a container's published ports")
    p.add_argument("container")
    p.add_argument("port", nargs="?")

    p = sub.add_parser("top", help="the processes of a container")
    p.add_argument("container")

    p = sub.add_parser("stats", help="resource usage of containers")
    p.add_argument("containers", nargs="*")
    p.add_argument("--no-stream", action="store_true", help="(the only mode: one snapshot)")

    p = sub.add_parser("network", help="the bridge network")
    p.add_argument("action", choices=("ls", "inspect", "prune"))

    sub.add_parser("info", help="how this host is set up")


def registry_options(args: argparse.Namespace) -> Optional[Any]:
    return _registry_options(args)
