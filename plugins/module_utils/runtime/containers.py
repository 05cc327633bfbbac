"""Containers: create, start, stop, kill, remove, list, inspect, logs, exec — the public API.

The CLI and the modules call :class:`Runtime`; it keeps every container as
files under ``<data-root>/containers/<id>/`` (no daemon holds any state)::

    config.json        the create spec, the effective config, image, volumes: written once
    state.json         status, pids with start times, network, cgroup, exit code
    exit.json          written by the container's monitor when the process exited
    <id>-json.log      output in Docker's json-file format
    upper/ work/       the container's writable overlay layer
    etc/               hosts, hostname, resolv.conf bind-mounted into the container
    lock               flock held while the container changes state
    stop-requested     written by stop/kill so the restart policy stands down

``<data-root>/names/<name>`` is a symlink to the id: creating it is atomic,
so two concurrent ``run --name web`` can never both succeed.

What ``ps`` shows is observed, not just remembered: a container recorded as
running is running only if its init process (pid *and* start time, so a
reused pid does not count) is alive; an ``exit.json`` or a dead supervisor
makes it exited, whatever ``state.json`` still says.  A container cannot
outlive its supervisor: the kernel kills its init (and so its whole pid
namespace) when the supervisor dies (``PR_SET_PDEATHSIG``), so a killed
supervisor shows as ``exited (137)`` with an error saying why, and the next
``stop``, ``rm`` or ``start`` releases what the run held.

The files of a ``--rm`` container are replaced atomically but never fsynced
(``fsutil.write_json_atomic(durable=False)``): it does not outlive a crash of
the host either.
"""

import contextlib
import os
import signal
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

from . import fsutil
from . import spec as spec_module
from .config import DaemonConfig
from .config import load as load_config
from .errors import Conflict, ContainerError, InvalidArgument, NotFound, StateError

ID_LENGTH = 64
STOP_WAIT_FOR_MONITOR = 15.0


def now_rfc3339() -> str:
    """The time now as Docker records it (RFC 3339 UTC, nanoseconds); the display module would import datetime."""
    from .monitor import rfc3339

    return rfc3339(time.time_ns())


def process_start_time(pid: Optional[int]) -> Optional[int]:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks), or None if the pid is gone."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def alive(pid: Optional[int], start_time: Optional[int]) -> bool:
    """The process *pid* exists and is the one that started at *start_time* (not a zombie)."""
    if not pid or start_time is None or process_start_time(pid) != start_time:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :].split()[0] != b"Z"


def random_hex(length: int) -> str:
    """*length* random hex digits (``os.urandom``: the ``secrets`` module costs an import of hmac)."""
    return os.urandom((length + 1) // 2).hex()[:length]


class Container:
    """One container as stored: its creation record and its last recorded state."""

    __slots__ = ("directory", "id", "record", "state")

    def __init__(self, container_id: str, directory: str, record: Dict[str, Any], state: Dict[str, Any]) -> None:
        self.id = container_id
        self.directory = directory
        self.record = record
        self.state = state
        stored = record.get("spec")
        if stored is not None and spec_module.DEFAULTS.keys() - stored.keys():  # created by an older Berth
            import copy

            for key in spec_module.DEFAULTS.keys() - stored.keys():
                stored[key] = copy.deepcopy(spec_module.DEFAULTS[key])

    def __repr__(self) -> str:
        return f"Container({self.id[:12]}, {self.record.get('name')!r})"

    @property
    def name(self) -> str:
        return self.record["name"]

    @property
    def spec(self) -> Dict[str, Any]:
        return self.record["spec"]

    @property
    def effective(self) -> Dict[str, Any]:
        return self.record["effective"]

    @property
    def image_id(self) -> str:
        return self.record["image_id"]

    @property
    def durable(self) -> bool:
        """Whether its files must survive a crash of the host (not for ``--rm`` containers)."""
        return not self.record.get("auto_remove")

    @property
    def log_path(self) -> str:
        return os.path.join(self.directory, f"{self.id}-json.log")

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def exit_record(self) -> Optional[Dict[str, Any]]:
        return fsutil.read_json(self.path("exit.json"))

    def observe(self) -> Dict[str, Any]:
        """The container's state as it really is now (read-only; nothing is written)."""
        state = dict(self.state)
        monitor_alive = alive(state.get("monitor_pid"), state.get("monitor_start_time"))
        state["monitor_alive"] = monitor_alive
        if state.get("status") not in ("running", "restarting"):
            return state
        exit_record = self.exit_record()
        if exit_record and exit_record.get("pid") == state.get("pid"):
            will_restart = monitor_alive and self._restart_pending(exit_record)
            state.update(
                status="restarting" if will_restart else "exited",
                exit_code=exit_record["exit_code"],
                finished_at=exit_record["finished_at"],
                oom_killed=exit_record.get("oom_killed", False),
            )
            return state
        if alive(state.get("pid"), state.get("pid_start_time")):
            state["status"] = "running"
            return state
        if state.get("status") == "restarting" and monitor_alive:
            return state
        if monitor_alive:
            # Exited a moment ago; the monitor is writing exit.json.
            state.update(status="exited", exit_code=state.get("exit_code"))
            return state
        state.update(status="exited", exit_code=137, error=SUPERVISOR_DIED)
        return state

    def _restart_pending(self, exit_record: Dict[str, Any]) -> bool:
        from .monitor import should_restart

        return should_restart(
            self.spec["restart_policy"],
            exit_record["exit_code"],
            self.state.get("restart_count", 0),
            os.path.exists(self.path("stop-requested")),
        )

    @property
    def running(self) -> bool:
        return self.observe()["status"] in ("running", "restarting")


SUPERVISOR_DIED = (
    "the container's supervisor ended without recording how it exited (it was killed, or the disk was full); "
    "the container ended with it"
)

NAME_ADJECTIVES = (
    "agile", "bold", "brave", "calm", "clever", "eager", "fond", "gentle", "happy", "jolly", "keen",
    "lucid", "merry", "nimble", "proud", "quiet", "serene", "sharp", "steady", "swift", "tidy", "vivid",
)  # fmt: skip
NAME_NOUNS = (
    "anchor", "beacon", "buoy", "cove", "dock", "ferry", "galley", "harbor", "hull", "jetty", "keel",
    "lantern", "mast", "mooring", "pier", "quay", "rudder", "schooner", "sloop", "tide", "wharf", "yawl",
)  # fmt: skip


class Runtime:
    """The containers (and images) of one host, as configured by its daemon.json."""

    def __init__(self, config: Optional[DaemonConfig] = None) -> None:
        self.config = config or load_config()
        self._store: Any = None
        self._images: Any = None
        self.root = os.path.join(self.config.data_root, "containers")
        self.names = os.path.join(self.config.data_root, "names")
        self.volumes = os.path.join(self.config.data_root, "volumes")

    @property
    def store(self) -> Any:
        """The image store (:class:`store.Store`), made on first use: ``ps`` or ``stop`` never need it."""
        if self._store is None:
            from .store import Store

            self._store = Store(self.config.data_root)
        return self._store

    @property
    def images(self) -> Any:
        """The images (:class:`images.Images`), made on first use."""
        if self._images is None:
            from .images import Images

            self._images = Images(self.config, self.store)
        return self._images

    # -- lookup -----------------------------------------------------------------

    def _load(self, container_id: str) -> Optional[Container]:
        directory = os.path.join(self.root, container_id)
        record = fsutil.read_json(os.path.join(directory, "config.json"))
        if not record:
            return None
        state = fsutil.read_json(os.path.join(directory, "state.json"), {"status": "created"})
        return Container(container_id, directory, record, state)

    def find(self, name_or_id: str) -> Optional[Container]:
        """A container by name (``web`` or ``/web``), full id or unambiguous id prefix."""
        name = name_or_id.lstrip("/")
        if not name:
            return None
        with contextlib.suppress(OSError):
            target = os.readlink(os.path.join(self.names, name))
            container = self._load(target)
            if container is not None:
                return container
        if all(c in "0123456789abcdef" for c in name):
            if len(name) == ID_LENGTH:
                return self._load(name)
            matches = [entry for entry in self._ids() if entry.startswith(name)]
            if len(matches) > 1:
                raise Conflict(f"container id prefix {name} is ambiguous: it matches {len(matches)} containers")
            if matches:
                return self._load(matches[0])
        return None

    def get(self, name_or_id: str) -> Container:
        container = self.find(name_or_id)
        if container is None:
            raise NotFound(f"no such container: {name_or_id}")
        return container

    def _ids(self) -> List[str]:
        try:
            return [entry for entry in os.listdir(self.root) if len(entry) == ID_LENGTH]
        except FileNotFoundError:
            return []

    def list(self, include_stopped: bool = True) -> List[Container]:
        containers = [container for container in map(self._load, self._ids()) if container is not None]
        if not include_stopped:
            containers = [container for container in containers if container.running]
        containers.sort(key=lambda container: container.record["created"], reverse=True)
        return containers

    def containers_using_image(self, image_id: str) -> List[str]:
        return [container.name for container in self.list() if container.image_id == image_id]

    @contextlib.contextmanager
    def locked(self, container: Container) -> Iterator[Container]:
        """Hold the container's lock and yield it freshly read (state may have moved meanwhile)."""
        with fsutil.locked(container.path("lock")):
            fresh = self._load(container.id)
            if fresh is None:
                raise NotFound(f"container {container.name} was removed meanwhile")
            yield fresh

    def save_state(self, container: Container, **changes: Any) -> None:
        container.state.update(changes)
        fsutil.write_json_atomic(container.path("state.json"), container.state, durable=container.durable)

    # -- create -------------------------------------------------------------------

    def _new_name(self) -> str:
        for _attempt in range(100):
            first, second = os.urandom(2)
            name = f"{NAME_ADJECTIVES[first % len(NAME_ADJECTIVES)]}_{NAME_NOUNS[second % len(NAME_NOUNS)]}"
            if not os.path.lexists(os.path.join(self.names, name)):
                return name
        return "berth_" + random_hex(12)

    def _claim_name(self, name: Optional[str], container_id: str) -> str:
        """Take *name* (or a generated one) for *container_id*: creating the symlink is the atomic claim."""
        for _attempt in range(20):
            wanted = name or self._new_name()
            try:
                os.symlink(container_id, os.path.join(self.names, wanted))
                return wanted
            except FileExistsError:
                if name is None:
                    continue  # another create took the generated name meanwhile: draw again
                holder = self.find(name)
                holder_id = holder.id if holder else "(being created)"
                raise Conflict(
                    f'the container name "/{name}" is already in use by container {holder_id}: remove (or rename)'
                    " that container to reuse the name"
                ) from None
        raise Conflict("could not find a free container name: give one with --name")

    def create(self, spec: Dict[str, Any], name: Optional[str] = None, auto_remove: bool = False) -> Container:
        """Create a container from a normalised spec (see :func:`spec.normalize`); the image must be local."""
        missing = set(spec_module.DEFAULTS) - set(spec)
        if missing:
            raise InvalidArgument(f"container spec lacks {', '.join(sorted(missing))}: build it with spec.normalize")
        if name is not None:
            spec_module.validate_name(name)
        fsutil.makedirs(self.root, 0o700)
        fsutil.makedirs(self.names, 0o700)
        with self.store.in_use():
            image = self.images.get(spec["image"])
            effective = spec_module.effective(spec, self.images.config_of(image))
            if spec["network_mode"].startswith("container:"):
                self.get(spec["network_mode"][len("container:") :])
            container_id = random_hex(ID_LENGTH)
            directory = os.path.join(self.root, container_id)
            fsutil.makedirs(directory, 0o700)
            claimed = None
            try:
                name = claimed = self._claim_name(name, container_id)
                for sub in ("upper", "work", "etc"):
                    fsutil.makedirs(os.path.join(directory, sub), 0o755 if sub == "upper" else 0o700)
                record = {
                    "id": container_id,
                    "name": name,
                    "created": now_rfc3339(),
                    "image": spec["image"],
                    "image_id": image.id,
                    "chain_ids": list(image.chain_ids),
                    "hostname": spec["hostname"] or container_id[:12],
                    "spec": spec,
                    "effective": effective,
                    "volumes": self._prepare_volumes(spec, effective),
                    "auto_remove": auto_remove,
                }
                durable = not auto_remove
                fsutil.write_json_atomic(os.path.join(directory, "config.json"), record, durable=durable)
                fsutil.write_json_atomic(os.path.join(directory, "state.json"), {"status": "created"}, durable=durable)
            except BaseException:
                if claimed is not None:
                    with contextlib.suppress(OSError):
                        if os.readlink(os.path.join(self.names, claimed)) == container_id:
                            os.unlink(os.path.join(self.names, claimed))
                fsutil.remove_tree(directory)
                raise
        container = self._load(container_id)
        if container is None:
            raise ContainerError(f"container {name} vanished while it was created")
        return container

    def _prepare_volumes(self, spec: Dict[str, Any], effective: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Host paths of the container's volumes: named ones shared, anonymous ones its own."""
        result = []
        targets = {volume["target"] for volume in spec["volumes"]} | set(spec["tmpfs"])
        requested = list(spec["volumes"])
        for target in effective.get("image_volumes", []):
            if target not in targets:
                requested.append({"type": "volume", "source": "", "target": target, "read_only": False})
        for volume in requested:
            entry = dict(volume)
            if volume["type"] == "volume":
                anonymous = not volume["source"]
                name = volume["source"] or random_hex(64)
                data = os.path.join(self.volumes, name, "_data")
                fsutil.makedirs(os.path.dirname(data), 0o700)
                fsutil.makedirs(data, 0o755)
                entry.update(host_path=data, name=name, anonymous=anonymous)
            else:
                if not os.path.exists(volume["source"]):
                    raise InvalidArgument(f"bind source path does not exist: {volume['source']}")
                entry.update(host_path=volume["source"])
            result.append(entry)
        return result

    # -- start / stop -------------------------------------------------------------------

    def start(self, container: Container) -> Container:
        """Start a created or stopped container under a new monitor; a running one is left alone."""
        from . import supervisor

        with self.locked(container) as fresh:
            if fresh.observe()["status"] in ("running", "restarting"):
                return fresh
            self._finish_previous_run(fresh)
            supervisor.launch(self, fresh)
            return self._load(fresh.id) or fresh

    def _finish_previous_run(self, container: Container) -> None:
        """Tidy what an earlier run left (a crashed monitor, a stale exit file) before a new one."""
        from . import supervisor

        if container.state.get("status") in ("running", "restarting") or container.state.get("network"):
            supervisor.cleanup(self, container, remove=False)
        for name in ("exit.json", "stop-requested"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(container.path(name))

    def stop(self, container: Container, timeout: Optional[int] = None, sig: Optional[str] = None) -> bool:
        """Docker's stop: the stop signal, *timeout* seconds, then SIGKILL. False if it was not running."""
        from . import supervisor

        with self.locked(container) as fresh:
            state = fresh.observe()
            if state["status"] not in ("running", "restarting"):
                if fresh.state.get("status") in ("running", "restarting") or fresh.state.get("network"):
                    supervisor.cleanup(self, fresh, remove=False)
                return False
            fsutil.write_atomic(fresh.path("stop-requested"), b"")
            wait = fresh.effective["stop_timeout"] if timeout is None else timeout
            number = spec_module.signal_number(sig or fresh.effective["stop_signal"])
            if state["status"] == "running":
                self._signal(fresh, number)
                if not self._wait_exit(fresh, wait):
                    self._signal(fresh, signal.SIGKILL)
                    self._wait_exit(fresh, 10)
            self._wait_monitor(fresh)
            return True

    def kill(self, container: Container, sig: str = "SIGKILL") -> None:
        with self.locked(container) as fresh:
            if fresh.observe()["status"] != "running":
                raise StateError(f"container {fresh.name} is not running")
            number = spec_module.signal_number(sig)
            if number in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                fsutil.write_atomic(fresh.path("stop-requested"), b"")
            self._signal(fresh, number)

    def restart(self, container: Container, timeout: Optional[int] = None) -> Container:
        self.stop(container, timeout)
        return self.start(container)

    def _signal(self, container: Container, number: int) -> None:
        state = container.state
        if alive(state.get("pid"), state.get("pid_start_time")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], number)

    def _wait_exit(self, container: Container, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, float(timeout))
        delay = 0.005
        while alive(container.state.get("pid"), container.state.get("pid_start_time")):
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return True

    def _wait_monitor(self, container: Container) -> None:
        """Let the monitor record the exit and tidy up; do it here if it died."""
        from . import supervisor

        state = container.state
        deadline = time.monotonic() + STOP_WAIT_FOR_MONITOR
        delay = 0.005
        while alive(state.get("monitor_pid"), state.get("monitor_start_time")) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        fresh = self._load(container.id)
        if fresh is not None and (fresh.state.get("status") in ("running", "restarting") or fresh.state.get("network")):
            supervisor.cleanup(self, fresh, remove=False)

    # -- remove -------------------------------------------------------------------

    def remove(self, container: Container, force: bool = False, volumes: bool = False) -> None:
        """Remove a container (``force`` kills a running one first) and its writable layer."""
        from . import supervisor

        with self.locked(container) as fresh:
            status = fresh.observe()["status"]
            if status in ("running", "restarting"):
                if not force:
                    raise Conflict(f"cannot remove running container {fresh.name}: stop it first, or force the removal")
                fsutil.write_atomic(fresh.path("stop-requested"), b"")
                self._signal(fresh, signal.SIGKILL)
                self._wait_exit(fresh, 10)
            # Also when it exited by itself: its monitor may still be recording that (a clean-up of its own).
            self._wait_monitor(fresh)
            final = self._load(fresh.id) or fresh
            supervisor.cleanup(self, final, remove=False)
            self._delete(final, volumes)

    def _unit_path(self, container: Container) -> Optional[str]:
        from . import units

        path = os.path.join(units.unit_dir(self.config), units.unit_name(container.name))
        return path if os.path.exists(path) else None

    def ensure_boot_unit(self, name: str, restart_policy: str, check_mode: bool = False) -> Optional[str]:
        """The systemd unit that brings container *name* back after a reboot, if its policy wants one.

        Returns the unit's path when it was (or, in check mode, would be)
        written; None when it was already right, or not wanted (an unwanted
        unit is removed, except in check mode).
        """
        import sys

        from . import units
        from .install import library_path

        if not units.wants_boot(restart_policy):
            if not check_mode:
                units.remove_unit(self.config, name)
            return None
        library = library_path(self.config, install=not check_mode)
        return units.ensure_unit(self.config, name, restart_policy, sys.executable, library, check_mode)

    def _delete(self, container: Container, volumes: bool) -> None:
        if container.spec["restart_policy"] not in ("", "no"):
            from . import units

            units.remove_unit(self.config, container.name)  # only such policies ever get a boot unit
        name_link = os.path.join(self.names, container.name)
        with contextlib.suppress(OSError):
            if os.readlink(name_link) == container.id:
                os.unlink(name_link)
        for volume in container.record.get("volumes", []):
            if volume.get("anonymous") and (volumes or container.record.get("auto_remove")):
                fsutil.remove_tree(os.path.join(self.volumes, volume["name"]))
        fsutil.remove_tree(container.directory)

    # -- exec, logs ----------------------------------------------------------------------

    def exec(
        self,
        container: Container,
        args: Sequence[str],
        env: Optional[Sequence[str]] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
        tty: bool = False,
        privileged: bool = False,
        stdio: Sequence[int] = (0, 1, 2),
    ) -> int:
        """Start *args* inside the running container; return its host pid (a child of the caller)."""
        from . import process, supervisor

        state = container.observe()
        if state["status"] != "running":
            raise StateError(f"container {container.name} is not running")
        base = supervisor.process_spec(self, container, network="none", etc_files={})
        merged_env = list(base.env)
        if env:
            keys = {entry.split("=", 1)[0] for entry in env}
            merged_env = [entry for entry in merged_env if entry.split("=", 1)[0] not in keys] + list(env)
        exec_spec = process.ExecSpec.like(
            base, args, env=merged_env, cwd=cwd, user=user, tty=tty, privileged=privileged or None
        )
        started = process.exec_in(
            state["pid"], exec_spec, stdio[0], stdio[1], stdio[2], start_time=state.get("pid_start_time")
        )
        return started.pid

    def log_files(self, container: Container) -> List[str]:
        """The json-file logs of a container, oldest first (rotated files included)."""
        base = container.log_path
        rotated = []
        number = 1
        while os.path.exists(f"{base}.{number}"):
            rotated.append(f"{base}.{number}")
            number += 1
        return list(reversed(rotated)) + ([base] if os.path.exists(base) else [])

    # -- inspect ------------------------------------------------------------------------

    def commit(self, container: Container, reference: Optional[str] = None, **options: Any) -> Any:
        """``docker commit``: the container's changes as a new image (see :func:`commit.commit`)."""
        from .commit import commit

        return commit(self, container, reference, **options)

    def inspect(self, container: Container) -> Dict[str, Any]:
        """Docker's ``container inspect`` shape (the fields users script against), plus Berth's own."""
        state = container.observe()
        spec, effective, record = container.spec, container.effective, container.record
        # The stored attachment (network.Attachment.to_dict) is read as it is: importing the network
        # code would cost a no-op run of the container module more than all of this.
        attachment: Dict[str, Any] = state.get("network") or {}
        ports: Dict[str, Any] = {}
        for port in attachment.get("ports", []):
            key = f"{port['container_port']}/{port.get('protocol', 'tcp')}"
            host = {"HostIp": port.get("host_ip") or "0.0.0.0", "HostPort": str(port["host_port"])}
            ports.setdefault(key, []).append(host)
        for exposed in effective["exposed_ports"]:
            key = exposed if "/" in exposed else exposed + "/tcp"
            ports.setdefault(key, None)
        policy, _sep, retries = spec["restart_policy"].partition(":")
        return {
            "Id": container.id,
            "Created": record["created"],
            "Path": effective["args"][0],
            "Args": effective["args"][1:],
            "State": {
                "Status": state["status"],
                "Running": state["status"] == "running",
                "Paused": False,
                "Restarting": state["status"] == "restarting",
                "OOMKilled": bool(state.get("oom_killed")),
                "Dead": False,
                "Pid": state.get("pid", 0) if state["status"] == "running" else 0,
                "ExitCode": state.get("exit_code") or 0,
                "Error": state.get("error", ""),
                "StartedAt": state.get("started_at", "0001-01-01T00:00:00Z"),
                "FinishedAt": state.get("finished_at", "0001-01-01T00:00:00Z"),
            },
            "Image": container.image_id,
            "Name": "/" + container.name,
            "RestartCount": state.get("restart_count", 0),
            "LogPath": container.log_path,
            "Config": {
                "Hostname": record["hostname"],
                "User": effective["user"],
                "Tty": spec["tty"],
                "OpenStdin": spec["interactive"],
                "Env": effective["env"],
                "Cmd": spec["command"],
                "Entrypoint": spec["entrypoint"],
                "Image": record["image"],
                "WorkingDir": effective["working_dir"],
                "Labels": effective["labels"],
                "ExposedPorts": {port: {} for port in effective["exposed_ports"]},
                "StopSignal": effective["stop_signal"],
                "StopTimeout": effective["stop_timeout"],
            },
            "HostConfig": {
                "Binds": [
                    f"{volume['source']}:{volume['target']}{':ro' if volume['read_only'] else ''}"
                    for volume in spec["volumes"]
                    if volume["type"] == "bind" or volume["source"]
                ],
                "Tmpfs": spec["tmpfs"],
                "Memory": spec["memory"] or 0,
                "NanoCpus": int((spec["cpus"] or 0) * 1e9),
                "CpuShares": spec["cpu_shares"] or 0,
                "PidsLimit": spec["pids_limit"],
                "NetworkMode": spec["network_mode"],
                "PortBindings": {key: value for key, value in ports.items() if value is not None},
                "PublishAllPorts": spec["publish_all_ports"],
                "RestartPolicy": {"Name": policy, "MaximumRetryCount": int(retries or 0)},
                "AutoRemove": bool(record.get("auto_remove")),
                "Privileged": spec["privileged"],
                "UsernsMode": "" if spec["userns"] == "host" else spec["userns"],
                "CapAdd": spec["cap_add"],
                "CapDrop": spec["cap_drop"],
                "ReadonlyRootfs": spec["read_only"],
            },
            "Mounts": [
                {
                    "Type": volume["type"],
                    "Name": volume.get("name", ""),
                    "Source": volume["host_path"],
                    "Destination": volume["target"],
                    "RW": not volume["read_only"],
                }
                for volume in record.get("volumes", [])
            ],
            "NetworkSettings": {
                "IPAddress": attachment.get("ip", ""),
                "IPPrefixLen": attachment.get("prefixlen", 0),
                "Gateway": attachment.get("gateway", ""),
                "MacAddress": attachment.get("mac", ""),
                "Bridge": attachment.get("bridge", ""),
                "Ports": ports,
            },
            "GraphDriver": {
                "Name": "overlay",
                "Data": {
                    "UpperDir": container.path("upper"),
                    "WorkDir": container.path("work"),
                    "LowerDir": ":".join(self.store.layer_diff(chain) for chain in reversed(record["chain_ids"])),
                },
            },
            "Berth": {
                "Spec": spec,
                "Effective": effective,
                "MonitorPid": state.get("monitor_pid"),
                "MonitorAlive": state.get("monitor_alive"),
                "Unit": self._unit_path(container),
            },
        }
