"""Resource limits of a container: cgroup v1 (legacy and hybrid) and v2 (unified).

One :class:`Cgroup` per container.  On v1 it is a ``<parent>/<name>``
directory in each hierarchy it needs (memory, cpu, cpuacct, pids, freezer;
name=systemd and the hybrid unified one for systemd containers), nested under
the calling process's own cgroup by default.  On v2 it is one leaf
``/berth/<name>`` below the root, with the controllers enabled through
``cgroup.subtree_control`` on every ancestor (v2 forbids processes in inner
nodes, so limits never go on the caller's own cgroup).

The host's layout (:class:`Layout`) is read from ``/proc/self/mountinfo``
and ``/proc/self/cgroup``; tests pass a layout pointing at a fake tree,
which is how the v2 code is exercised on a host whose v2 hierarchy has no
controllers.
"""

import contextlib
import errno
import math
import os
import signal
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

from .errors import CgroupError, InvalidArgument

DEFAULT_CPU_PERIOD = 100000
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses less than 6 MiB
SYSTEMD_KEY = "name=systemd"
V2_KEY = ""
_V1_NEEDED = ("memory", "cpu", "cpuacct", "pids", "freezer")
_V2_CONTROLLERS = ("cpu", "memory", "pids")


class Resources(NamedTuple):
    """Limits as Docker's options give them (``None`` = not limited).

    ``memory_swap`` is memory plus swap like ``--memory-swap``: ``None`` means
    Docker's default of twice ``memory``, ``-1`` unlimited swap.
    """

    memory: Optional[int] = None
    memory_swap: Optional[int] = None
    cpu_quota: Optional[int] = None
    cpu_period: Optional[int] = None
    cpu_shares: Optional[int] = None
    pids_limit: Optional[int] = None

    @classmethod
    def from_cpus(cls, cpus: float, **others: Optional[int]) -> "Resources":
        """``--cpus 1.5`` = a quota of 150 ms per 100 ms period."""
        if cpus <= 0:
            raise InvalidArgument(f"cpus must be a positive number, not {cpus}")
        return cls(cpu_quota=round(cpus * DEFAULT_CPU_PERIOD), cpu_period=DEFAULT_CPU_PERIOD, **others)

    def validate(self) -> None:
        if self.memory is not None and self.memory < MIN_MEMORY:
            raise InvalidArgument(f"memory limit {self.memory} is too small: the minimum is 6 MiB ({MIN_MEMORY})")
        if self.memory_swap is not None and self.memory_swap != -1:
            if self.memory is None:
                raise InvalidArgument("memory_swap needs a memory limit too")
            if self.memory_swap < self.memory:
                raise InvalidArgument("memory_swap (memory plus swap) must not be smaller than memory")
        if self.cpu_shares is not None and not 2 <= self.cpu_shares <= 262144:
            raise InvalidArgument(f"cpu_shares must be between 2 and 262144, not {self.cpu_shares}")
        if self.cpu_period is not None and not 1000 <= self.cpu_period <= 1000000:
            raise InvalidArgument(f"cpu_period must be between 1000 and 1000000 microseconds, not {self.cpu_period}")
        if self.cpu_quota is not None and self.cpu_quota < 1000:
            raise InvalidArgument(f"cpu_quota must be at least 1000 microseconds, not {self.cpu_quota}")

    @property
    def effective_swap(self) -> Optional[int]:
        """memory+swap to apply: Docker's default doubles the memory limit."""
        if self.memory is None:
            return None
        if self.memory_swap is None:
            return 2 * self.memory
        return self.memory_swap


def cpu_weight_from_shares(shares: int) -> int:
    """cgroup v2 ``cpu.weight`` for v1 ``cpu.shares``: runc's quadratic fit (2->1, 1024->100, 262144->10000)."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return math.ceil(10**exponent)


class Stats(NamedTuple):
    memory_usage: int
    memory_limit: Optional[int]
    cpu_usage_ns: int
    pids: int
    oom_kills: int


class Layout(NamedTuple):
    """Where the host's cgroup hierarchies are and where the caller sits in them.

    ``mounts`` and ``own`` are keyed by hierarchy: on v1 the controller list
    of ``/proc/self/cgroup`` (``memory``, ``cpu,cpuacct``, ``name=systemd``),
    on v2 (and for the hybrid unified hierarchy) the empty string.
    """

    version: int
    mounts: Dict[str, str]
    own: Dict[str, str]
    mount_roots: Dict[str, str] = {}  # never mutated: a shared default is safe

    def key_for(self, controller: str) -> Optional[str]:
        for key in self.mounts:
            if controller in key.split(","):
                return key
        return None

    def directory(self, key: str, cgroup_path: str) -> str:
        """The host directory of *cgroup_path* in hierarchy *key*."""
        root = self.mount_roots.get(key, "/")
        relative = cgroup_path
        if root != "/" and (relative == root or relative.startswith(root + "/")):
            relative = relative[len(root) :]
        return os.path.join(self.mounts[key], relative.lstrip("/")).rstrip("/") or "/"

    @property
    def unified(self) -> Optional[str]:
        return self.mounts.get(V2_KEY)


def parse_proc_cgroup(text: str) -> Dict[str, str]:
    """``/proc/PID/cgroup`` as {hierarchy key: path}."""
    result = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            result[parts[1]] = parts[2]
    return result


def parse_cgroup_mounts(mountinfo: str) -> List[Tuple[str, str, str, Tuple[str, ...]]]:
    """cgroup mounts of ``mountinfo``: (mount point, mount root, fstype, super options)."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = fields[4].replace("\\040", " ")
        mounts.append((mountpoint, fields[3], tail[0], tuple(tail[2].split(","))))
    return mounts


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def layout_from(mountinfo: str, proc_cgroup: str) -> Layout:
    """The layout described by the text of ``/proc/self/mountinfo`` and ``/proc/self/cgroup``."""
    mounts = parse_cgroup_mounts(mountinfo)
    own = parse_proc_cgroup(proc_cgroup)
    points: Dict[str, str] = {}
    roots: Dict[str, str] = {}
    for key in own:
        wanted = set(key.split(",")) if key else set()
        for mountpoint, root, fstype, options in mounts:
            if (fstype == "cgroup2") if not key else (fstype == "cgroup" and wanted <= set(options)):
                points.setdefault(key, mountpoint)
                roots.setdefault(key, root)
    if not points:
        raise CgroupError("no cgroup filesystem is mounted (see /proc/self/mountinfo); mount cgroup2 on /sys/fs/cgroup")
    version = 2 if set(points) == {V2_KEY} else 1
    return Layout(version, points, {key: own[key] for key in points}, roots)


def detect(mountinfo: str = "/proc/self/mountinfo", proc_cgroup: str = "/proc/self/cgroup") -> Layout:
    """The host's layout: v2 when only the unified hierarchy exists, else v1 (legacy or hybrid)."""
    return layout_from(_read_text(mountinfo), _read_text(proc_cgroup))


_cached_layout: Optional[Layout] = None


def host_layout() -> Layout:
    global _cached_layout
    if _cached_layout is None:
        _cached_layout = detect()
    return _cached_layout


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise CgroupError(f"cannot open {path}: {exc.strerror}") from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _read_optional(path: str) -> Optional[str]:
    try:
        return _read_text(path)
    except (FileNotFoundError, ProcessLookupError):
        return None


def _keyed_value(text: Optional[str], key: str) -> int:
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\n" in name:
        raise InvalidArgument(f"invalid cgroup name {name!r}")


def _check_parent(parent: str) -> None:
    if any(part in ("..", ".") for part in parent.split("/")) or "\n" in parent:
        raise InvalidArgument(f"invalid cgroup parent {parent!r}")


def join_file(directory: str, key: str) -> str:
    """The file a single-threaded process writes ``0`` to, to join cgroup *directory* of hierarchy *key*.

    On cgroup v1 that is ``tasks``: it moves the writing thread only, which
    the kernel does without the global threadgroup lock, where
    ``cgroup.procs`` takes that lock and waits for an RCU grace period
    (10-20 ms of every container start, measured here).  For a process with
    one thread the outcome is the same.  Version 2 has ``cgroup.procs`` only
    (``cgroup.threads`` is for threaded subtrees).
    """
    return os.path.join(directory, "cgroup.procs" if key == V2_KEY else "tasks")


class Cgroup:
    """One container's cgroup: its directories, keyed by hierarchy."""

    def __init__(self, version: int, directories: Dict[str, str]) -> None:
        self.version = version
        self.directories = dict(directories)

    # -- creation -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        resources: Optional[Resources] = None,
        layout: Optional[Layout] = None,
        parent: Optional[str] = None,
        systemd: bool = False,
    ) -> "Cgroup":
        """Create the cgroup of container *name* and apply *resources*.

        *parent* relative (v1 default ``berth``) nests under the caller's own
        cgroup; absolute (v2 default ``/berth``) starts at the hierarchy root.
        An existing empty directory (left by a crash) is reused.
        """
        _check_name(name)
        resources = resources or Resources()
        resources.validate()
        layout = layout or host_layout()
        if layout.version == 2:
            directories = cls._v2_directories(layout, name, parent or "/berth")
        else:
            directories = cls._v1_directories(layout, name, parent or "berth", systemd)
        group = cls(layout.version, directories)
        created: List[str] = []
        try:
            for directory in directories.values():
                created.extend(_makedirs(directory))
            if layout.version == 2:
                group._enable_v2_controllers(layout, directories[V2_KEY])
            group._check_empty()
            group.apply(resources)
        except BaseException:
            for directory in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            raise
        return group

    @staticmethod
    def _relative(layout: Layout, key: str, parent: str, name: str) -> str:
        _check_parent(parent)
        base = parent if parent.startswith("/") else os.path.join(layout.own.get(key, "/"), parent)
        return os.path.join(base, name)

    @classmethod
    def _v1_directories(cls, layout: Layout, name: str, parent: str, systemd: bool) -> Dict[str, str]:
        directories = {}
        for controller in _V1_NEEDED:
            key = layout.key_for(controller)
            if key is None:
                if controller in ("memory", "cpu", "pids"):
                    raise CgroupError(f"the cgroup v1 {controller} controller is not mounted on this host")
                continue
            directories[key] = layout.directory(key, cls._relative(layout, key, parent, name))
        if systemd:
            for key in (SYSTEMD_KEY, V2_KEY):
                if key in layout.mounts:
                    directories[key] = layout.directory(key, cls._relative(layout, key, parent, name))
            if SYSTEMD_KEY not in directories:
                raise CgroupError(
                    "a systemd container needs the name=systemd cgroup v1 hierarchy, which is not mounted"
                )
        return directories

    @classmethod
    def _v2_directories(cls, layout: Layout, name: str, parent: str) -> Dict[str, str]:
        return {V2_KEY: layout.directory(V2_KEY, cls._relative(layout, V2_KEY, parent, name))}

    def _enable_v2_controllers(self, layout: Layout, leaf: str) -> None:
        root = layout.mounts[V2_KEY]
        available = set((_read_optional(os.path.join(root, "cgroup.controllers")) or "").split())
        wanted = [name for name in _V2_CONTROLLERS if name in available]
        if not wanted:
            return
        relative = os.path.relpath(os.path.dirname(leaf), root)
        ancestors = [root]
        if relative != ".":
            for part in relative.split("/"):
                ancestors.append(os.path.join(ancestors[-1], part))
        for directory in ancestors:
            path = os.path.join(directory, "cgroup.subtree_control")
            enabled = set((_read_optional(path) or "").split())
            missing = [name for name in wanted if name not in enabled]
            if not missing:
                continue
            try:
                _write(path, " ".join("+" + name for name in missing))
            except CgroupError as exc:
                raise CgroupError(
                    f"{exc}; cgroup v2 allows controllers only in cgroups without processes: "
                    f"choose a parent cgroup that holds no process"
                ) from None

    def _check_empty(self) -> None:
        if self.pids():
            raise CgroupError(f"cgroup {self.main_directory} already holds processes; is the container running?")

    # -- limits ---------------------------------------------------------------
    def apply(self, resources: Resources) -> None:
        """Write *resources* (also usable later, like ``docker update``)."""
        resources.validate()
        if self.version == 2:
            self._apply_v2(resources)
        else:
            self._apply_v1(resources)

    def _v1(self, controller: str, filename: str) -> Optional[str]:
        for key, directory in self.directories.items():
            if controller in key.split(","):
                return os.path.join(directory, filename)
        return None

    def _apply_v1(self, resources: Resources) -> None:
        if resources.memory is not None:
            self._write_v1("memory", "memory.limit_in_bytes", str(resources.memory))
            swap = resources.effective_swap
            memsw = self._v1("memory", "memory.memsw.limit_in_bytes")
            if swap is not None and memsw is not None and os.path.exists(memsw):
                _write(memsw, str(swap))
        if resources.cpu_period is not None:
            self._write_v1("cpu", "cpu.cfs_period_us", str(resources.cpu_period))
        if resources.cpu_quota is not None:
            self._write_v1("cpu", "cpu.cfs_quota_us", str(resources.cpu_quota))
        if resources.cpu_shares is not None:
            self._write_v1("cpu", "cpu.shares", str(resources.cpu_shares))
        if resources.pids_limit is not None:
            value = str(resources.pids_limit) if resources.pids_limit > 0 else "max"
            self._write_v1("pids", "pids.max", value)

    def _write_v1(self, controller: str, filename: str, value: str) -> None:
        path = self._v1(controller, filename)
        if path is None:
            raise CgroupError(f"cannot set {filename}: the {controller} controller is not available")
        _write(path, value)

    def _apply_v2(self, resources: Resources) -> None:
        leaf = self.directories[V2_KEY]
        if resources.memory is not None:
            _write(os.path.join(leaf, "memory.max"), str(resources.memory))
            swap = resources.effective_swap
            if swap is not None and os.path.exists(os.path.join(leaf, "memory.swap.max")):
                _write(os.path.join(leaf, "memory.swap.max"), "max" if swap == -1 else str(swap - resources.memory))
        if resources.cpu_quota is not None or resources.cpu_period is not None:
            quota = "max" if resources.cpu_quota is None else str(resources.cpu_quota)
            _write(os.path.join(leaf, "cpu.max"), f"{quota} {resources.cpu_period or DEFAULT_CPU_PERIOD}")
        if resources.cpu_shares is not None:
            _write(os.path.join(leaf, "cpu.weight"), str(cpu_weight_from_shares(resources.cpu_shares)))
        if resources.pids_limit is not None:
            value = str(resources.pids_limit) if resources.pids_limit > 0 else "max"
            _write(os.path.join(leaf, "pids.max"), value)

    # -- membership -----------------------------------------------------------
    @property
    def main_directory(self) -> str:
        """The directory whose ``cgroup.procs`` lists every process of the container."""
        if self.version == 2:
            return self.directories[V2_KEY]
        for controller in ("pids", "memory", "freezer"):
            for key, directory in self.directories.items():
                if controller in key.split(","):
                    return directory
        return next(iter(self.directories.values()))

    def join_files(self) -> List[str]:
        """The files a single-threaded process writes ``0`` to in order to join (see :func:`join_file`)."""
        return [join_file(directory, key) for key, directory in self.directories.items()]

    def add(self, pid: int) -> None:
        """Move process *pid*, all its threads, into the container's cgroups."""
        for directory in self.directories.values():
            _write(os.path.join(directory, "cgroup.procs"), str(pid))

    def pids(self) -> List[int]:
        """Every process in the container's cgroup, sub-cgroups included (systemd makes some)."""
        found: List[int] = []
        for directory in _walk_bottom_up(self.main_directory):
            text = _read_optional(os.path.join(directory, "cgroup.procs")) or ""
            found.extend(int(line) for line in text.split())
        return sorted(set(found))

    # -- freezing, killing, removal -------------------------------------------
    def freeze(self, timeout: float = 5.0) -> None:
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        self._set_frozen(False, timeout)

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        if self.version == 2:
            leaf = self.directories[V2_KEY]
            _write(os.path.join(leaf, "cgroup.freeze"), "1" if frozen else "0")
        else:
            state = self._v1("freezer", "freezer.state")
            if state is None:
                raise CgroupError("the freezer controller is not available on this host")
            _write(state, "FROZEN" if frozen else "THAWED")
        deadline = time.monotonic() + timeout
        while self._is_frozen() != frozen:
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"cgroup {self.main_directory} did not {'freeze' if frozen else 'thaw'} in {timeout}s"
                )
            time.sleep(0.005)

    def _is_frozen(self) -> Optional[bool]:
        """True when frozen, False when thawed, None in between (v1 FREEZING)."""
        if self.version == 2:
            return _keyed_value(_read_optional(os.path.join(self.directories[V2_KEY], "cgroup.events")), "frozen") == 1
        path = self._v1("freezer", "freezer.state")
        state = (_read_optional(path) if path else "").strip()
        return {"FROZEN": True, "THAWED": False}.get(state)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 5.0) -> None:
        """Signal every process; with SIGKILL, wait until the cgroup is empty."""
        if self.version == 2 and sig == signal.SIGKILL:
            kill_file = os.path.join(self.directories[V2_KEY], "cgroup.kill")
            if os.path.exists(kill_file):
                _write(kill_file, "1")
                self._wait_empty(timeout)
                return
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids or sig != signal.SIGKILL:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                return
            frozen = self._try_freeze()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if frozen:
                self.thaw()
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {pids} in {self.main_directory} survived SIGKILL for {timeout}s")
            time.sleep(0.01)

    def _try_freeze(self) -> bool:
        """Freeze so a fork bomb cannot outrun the kill loop; best effort."""
        try:
            self.freeze(timeout=1.0)
        except CgroupError:
            return False
        return True

    def _wait_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pids():
            if time.monotonic() > deadline:
                raise CgroupError(f"processes still in {self.main_directory} after {timeout}s")
            time.sleep(0.005)

    def remove(self, timeout: float = 5.0) -> None:
        """Remove every directory (sub-cgroups first), waiting while exiting tasks drain."""
        deadline = time.monotonic() + timeout
        for directory in self.directories.values():
            for path in _walk_bottom_up(directory):
                while True:
                    try:
                        os.rmdir(path)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                            raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror}") from None
                        if exc.errno == errno.ENOTEMPTY:
                            # cgroupfs answers EBUSY; ENOTEMPTY means a plain directory (a test's fake tree).
                            _clear_files(path)
                            continue
                        time.sleep(0.005)

    def exists(self) -> bool:
        return any(os.path.isdir(directory) for directory in self.directories.values())

    # -- accounting -----------------------------------------------------------
    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer took in this cgroup."""
        if self.version == 2:
            return _keyed_value(_read_optional(os.path.join(self.directories[V2_KEY], "memory.events")), "oom_kill")
        path = self._v1("memory", "memory.oom_control")
        return _keyed_value(_read_optional(path) if path else None, "oom_kill")

    def cpu_throttled(self) -> int:
        """Periods in which the CPU quota throttled the container (``nr_throttled``)."""
        path = os.path.join(self.directories[V2_KEY], "cpu.stat") if self.version == 2 else self._v1("cpu", "cpu.stat")
        return _keyed_value(_read_optional(path) if path else None, "nr_throttled")

    def stats(self) -> Stats:
        """Cheap numbers for ``berth stats``: a handful of small reads."""
        if self.version == 2:
            leaf = self.directories[V2_KEY]
            usage = int((_read_optional(os.path.join(leaf, "memory.current")) or "0").strip() or 0)
            inactive = _keyed_value(_read_optional(os.path.join(leaf, "memory.stat")), "inactive_file")
            limit_text = (_read_optional(os.path.join(leaf, "memory.max")) or "max").strip()
            limit = None if limit_text in ("max", "") else int(limit_text)
            cpu = _keyed_value(_read_optional(os.path.join(leaf, "cpu.stat")), "usage_usec") * 1000
            pids_text = _read_optional(os.path.join(leaf, "pids.current"))
        else:
            usage = int((self._read_v1("memory", "memory.usage_in_bytes") or "0").strip() or 0)
            inactive = _keyed_value(self._read_v1("memory", "memory.stat"), "total_inactive_file")
            limit_value = int((self._read_v1("memory", "memory.limit_in_bytes") or "0").strip() or 0)
            limit = limit_value if 0 < limit_value < 2**62 else None
            cpu = int((self._read_v1("cpuacct", "cpuacct.usage") or "0").strip() or 0)
            pids_text = self._read_v1("pids", "pids.current")
        pids = int(pids_text.strip()) if pids_text and pids_text.strip() else len(self.pids())
        return Stats(max(0, usage - inactive), limit, cpu, pids, self.oom_kills())

    def _read_v1(self, controller: str, filename: str) -> Optional[str]:
        path = self._v1(controller, filename)
        return _read_optional(path) if path else None

    # -- persistence ----------------------------------------------------------
    def to_dict(self) -> Dict[str, object]:
        return {"version": self.version, "directories": dict(self.directories)}

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "Cgroup":
        directories = data.get("directories")
        version = data.get("version")
        if version not in (1, 2) or not isinstance(directories, dict):
            raise CgroupError(f"invalid saved cgroup {data!r}")
        return cls(int(version), {str(key): str(value) for key, value in directories.items()})

    def __repr__(self) -> str:
        return f"Cgroup(v{self.version}, {self.main_directory})"


def _makedirs(path: str) -> List[str]:
    """mkdir -p that returns the directories it created (for undo)."""
    created: List[str] = []
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o755)
            created.append(directory)
        except FileExistsError:
            pass
        except OSError as exc:
            raise CgroupError(f"cannot create cgroup {directory}: {exc.strerror}") from None
    return created


def _walk_bottom_up(directory: str) -> Iterator[str]:
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_bottom_up(entry.path)
    yield directory


def _clear_files(path: str) -> None:
    """Remove the regular files of a cgroup directory that lives on a plain filesystem."""
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
