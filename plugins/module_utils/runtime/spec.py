"""Container create options: one canonical form for the CLI, the modules and the store.

A container is created from a *spec*: a plain, JSON-serialisable dict whose
keys are always all present, with defaults made explicit and values in one
canonical form (``64m`` is 67108864, ``net_admin`` is ``CAP_NET_ADMIN``,
ports are a sorted list).  The spec is stored with the container; together
with the image's config it gives the *effective* configuration (the command
that runs, the merged environment...), which is what idempotency compares.

Both ``berth run`` and the ``container`` module build specs here, so they
accept and reject the same things with the same messages.
"""

import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import userns
from .errors import InvalidArgument

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_STOP_TIMEOUT = 10
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses less: the runtime itself needs some.
SYSTEMD_COMMANDS = ("/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd", "/usr/sbin/init")
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
NETWORK_MODES = ("bridge", "host", "none")
NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
VOLUME_NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
ENV_NAME_PATTERN = re.compile(r"[^=\0]+")
TMPFS_OPTIONS = (
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "noexec",
    "exec",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "ro",
    "rw",
)

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
    "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17,
    "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
    "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31,
}  # fmt: skip
SIGRTMIN = 34
SIGRTMAX = 64

# The keys of a spec, with their defaults.  Order is the order `inspect` shows.
DEFAULTS: Dict[str, Any] = {
    "image": "",
    "command": None,
    "entrypoint": None,
    "env": {},
    "working_dir": None,
    "user": None,
    "hostname": None,
    "labels": {},
    "volumes": [],
    "tmpfs": {},
    "memory": None,
    "cpus": None,
    "cpu_shares": None,
    "pids_limit": None,
    "network_mode": "bridge",
    "published_ports": [],
    "publish_all_ports": False,
    "network_aliases": [],
    "restart_policy": "no",
    "privileged": False,
    "userns": "host",
    "cap_add": [],
    "cap_drop": [],
    "read_only": False,
    "systemd": "auto",
    "stop_signal": None,
    "stop_timeout": None,
    "tty": False,
    "interactive": False,
    # None: on, except for systemd containers (setuid tools such as sudo are part of a booted system).
    "no_new_privileges": None,
}


def _fail(option: str, value: Any, rule: str) -> InvalidArgument:
    return InvalidArgument(f"{option}: {value!r} {rule}")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > 128:
        raise _fail("name", name, "is not a valid container name: use letters, digits, '_', '.', '-', starting alnum")
    return name


def parse_bytes(value: Union[str, int, None], option: str) -> Optional[int]:
    """Docker's memory sizes: a number of bytes, or a number with b, k, m, g (powers of 1024)."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, bool):
        raise _fail(option, value, "is not a size")
    if isinstance(value, int):
        number = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", str(value).lower())
        if not match:
            raise _fail(option, value, "is not a size like 64m, 1g or 1048576")
        scale = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[match.group(2)]
        number = int(float(match.group(1)) * scale)
    if number < 0:
        raise _fail(option, value, "must not be negative")
    return number


def parse_memory(value: Union[str, int, None]) -> Optional[int]:
    number = parse_bytes(value, "memory")
    if number is not None and number < MIN_MEMORY:
        raise _fail("memory", value, "is below the minimum of 6m")
    return number


def parse_cpus(value: Union[str, float, int, None]) -> Optional[float]:
    if value in (None, "", 0, "0"):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _fail("cpus", value, "is not a number of CPUs like 0.5 or 2") from None
    available = os.cpu_count() or 1
    if number <= 0 or number > available:
        raise _fail("cpus", value, f"must be more than 0 and at most the {available} CPUs of this host")
    return round(number, 3)


def parse_positive_int(value: Any, option: str) -> Optional[int]:
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise _fail(option, value, "is not an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _fail(option, value, "is not an integer") from None
    if number < 0 or (number == 0 and option != "stop_timeout"):
        raise _fail(option, value, "must be a positive integer")
    return number


def parse_signal(value: Union[str, int, None], option: str = "stop_signal") -> Optional[str]:
    """A signal name or number -> its canonical name (``SIGTERM``, ``SIGRTMIN+3``)."""
    if value in (None, ""):
        return None
    text = str(value).strip().upper()
    if text.isdigit():
        number = int(text)
        for name, candidate in SIGNALS.items():
            if candidate == number:
                return "SIG" + name
        if SIGRTMIN <= number <= SIGRTMAX:
            return f"SIGRTMIN+{number - SIGRTMIN}"
        raise _fail(option, value, "is not a signal number")
    name = text[3:] if text.startswith("SIG") else text
    if name in SIGNALS:
        return "SIG" + name
    match = re.fullmatch(r"RTMIN(?:\+(\d+))?", name)
    if match and SIGRTMIN + int(match.group(1) or 0) <= SIGRTMAX:
        return f"SIGRTMIN+{int(match.group(1) or 0)}" if match.group(1) else "SIGRTMIN"
    raise _fail(option, value, "is not a signal name like SIGTERM, QUIT or 15")


def signal_number(name: str) -> int:
    canonical = parse_signal(name) or "SIGTERM"
    if canonical.startswith("SIGRTMIN"):
        return SIGRTMIN + int(canonical.partition("+")[2] or 0)
    return SIGNALS[canonical[3:]]


def parse_argv(value: Union[str, Sequence[str], None], option: str) -> Optional[List[str]]:
    """A command as a list, or a string split like a shell would (without expansion)."""
    if value is None:
        return None
    if isinstance(value, str):
        import shlex

        try:
            return shlex.split(value)
        except ValueError as exc:
            raise _fail(option, value, f"cannot be split into arguments: {exc}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(arg, str) for arg in value):
        raise _fail(option, value, "must be a string or a list of strings")
    return list(value)


def parse_env(env: Union[Mapping[str, Any], Sequence[str], None], env_files: Sequence[str] = ()) -> Dict[str, str]:
    """``KEY=VALUE`` strings or a mapping, after the env files (later entries win)."""
    result: Dict[str, str] = {}
    for path in env_files:
        result.update(read_env_file(path))
    if env is None:
        return result
    items: Iterable[Any] = env.items() if isinstance(env, Mapping) else (entry.partition("=")[::2] for entry in env)
    for key, value in items:
        if not isinstance(key, str) or not ENV_NAME_PATTERN.fullmatch(key):
            raise _fail("env", key, "is not a valid variable name")
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            raise _fail("env", {key: value}, "must have a string value (quote booleans and numbers in YAML)")
        result[key] = str(value)
    return result


def read_env_file(path: str) -> Dict[str, str]:
    """Docker's ``--env-file`` format: ``KEY=VALUE`` lines, ``#`` comments, ``KEY`` alone copies the caller's."""
    result: Dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise _fail("env_file", path, f"cannot be read: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not ENV_NAME_PATTERN.fullmatch(key) or " " in key:
            raise _fail("env_file", path, f"line {number}: {key!r} is not a variable name")
        if sep:
            result[key] = value
        elif key in os.environ:
            result[key] = os.environ[key]
    return result


def parse_volume(text: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """``HOST:CONTAINER[:ro|rw]``, ``NAME:CONTAINER[:ro]`` or ``CONTAINER`` (anonymous volume)."""
    if isinstance(text, Mapping):
        source = text.get("source") or ""
        target = text.get("target") or text.get("destination") or ""
        read_only = bool(text.get("read_only", False))
        kind = text.get("type") or ("bind" if str(source).startswith("/") else "volume")
    else:
        parts = str(text).split(":")
        read_only = False
        if len(parts) == 3 or (len(parts) == 2 and parts[1] in ("ro", "rw")):
            mode = parts.pop()
            if mode not in ("ro", "rw"):
                raise _fail("volumes", text, "has an unknown mode: use ro or rw")
            read_only = mode == "ro"
        if len(parts) == 1:
            source, target = "", parts[0]
        elif len(parts) == 2:
            source, target = parts
        else:
            raise _fail("volumes", text, "is not HOST:CONTAINER[:ro], NAME:CONTAINER[:ro] or CONTAINER")
        kind = "bind" if source.startswith("/") else "volume"
    if kind not in ("bind", "volume"):
        raise _fail("volumes", text, "has an unknown type: use bind or volume")
    if not str(target).startswith("/"):
        raise _fail("volumes", text, "needs an absolute path inside the container")
    if kind == "bind" and not str(source).startswith("/"):
        raise _fail("volumes", text, "needs an absolute host path for a bind mount")
    if kind == "volume" and source and not VOLUME_NAME_PATTERN.fullmatch(source):
        raise _fail("volumes", text, "names a volume with characters other than letters, digits, '_', '.', '-'")
    target = os.path.normpath("/" + str(target).lstrip("/"))
    if target == "/":
        raise _fail("volumes", text, "cannot mount over the container's root directory")
    if kind == "bind":
        source = os.path.normpath(source)
    return {"type": kind, "source": source, "target": target, "read_only": read_only}


def parse_tmpfs(value: Union[Mapping[str, str], Sequence[str], None]) -> Dict[str, str]:
    """``{"/run": "size=64m"}`` or ``["/run:size=64m"]``."""
    result: Dict[str, str] = {}
    if not value:
        return result
    items = value.items() if isinstance(value, Mapping) else (entry.partition(":")[::2] for entry in value)
    for target, options in items:
        if not str(target).startswith("/"):
            raise _fail("tmpfs", target, "needs an absolute path inside the container")
        for option in filter(None, str(options or "").split(",")):
            name = option.partition("=")[0]
            if name not in TMPFS_OPTIONS:
                raise _fail("tmpfs", f"{target}:{options}", f"has an unknown option {name!r}")
        result[os.path.normpath(str(target))] = str(options or "")
    return result


def parse_capabilities(values: Optional[Sequence[str]], option: str) -> List[str]:
    result = set()
    for value in values or ():
        name = str(value).strip().upper()
        if name == "ALL":
            result.add("ALL")
            continue
        name = name if name.startswith("CAP_") else "CAP_" + name
        if not re.fullmatch(r"CAP_[A-Z_]+", name):
            raise _fail(option, value, "is not a capability name like NET_ADMIN")
        result.add(name)
    return sorted(result)


def parse_restart_policy(value: Optional[str]) -> str:
    if value in (None, ""):
        return "no"
    text = str(value).strip().lower()
    name, sep, retries = text.partition(":")
    if name not in RESTART_POLICIES:
        raise _fail("restart_policy", value, "must be no, always, unless-stopped or on-failure[:max-retries]")
    if sep and (name != "on-failure" or not retries.isdigit()):
        raise _fail("restart_policy", value, "takes a retry count only as on-failure:N")
    return text


def parse_network_mode(value: Optional[str]) -> str:
    if value in (None, ""):
        return "bridge"
    text = str(value)
    if text in NETWORK_MODES or (text.startswith("container:") and NAME_PATTERN.fullmatch(text[10:] or "-")):
        return text
    raise _fail("network_mode", value, "must be bridge, host, none or container:NAME")


def parse_ports(values: Optional[Sequence[Union[str, int]]]) -> List[str]:
    """Published ports as a sorted list of canonical strings: a set for comparisons."""
    if not values:
        return []
    from .ports import parse_publish

    result = set()
    for value in values or ():
        for port in parse_publish(str(value)):
            result.add(str(port))
    return sorted(result)


def parse_labels(value: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise _fail("labels", value, "must be a mapping of strings")
    return {str(key): str(item) for key, item in value.items()}


def parse_optional_bool(value: Any, option: str) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise _fail(option, value, "must be true or false")


def parse_systemd(value: Union[bool, str, None]) -> Union[bool, str]:
    if value in (None, "", "auto"):
        return "auto"
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "yes", "always", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise _fail("systemd", value, "must be true, false or auto")


def normalize(options: Mapping[str, Any]) -> Dict[str, Any]:
    """Validate *options* (module parameters or parsed CLI flags) into a canonical spec."""
    unknown = set(options) - set(DEFAULTS) - {"env_file"}
    if unknown:
        raise InvalidArgument(f"unknown container option(s): {', '.join(sorted(unknown))}")
    env_files = options.get("env_file") or []
    if isinstance(env_files, str):
        env_files = [env_files]
    image = options.get("image")
    if not image or not isinstance(image, str):
        raise InvalidArgument("image: a container needs an image reference")
    from .reference import parse as parse_reference

    spec = dict(DEFAULTS)
    spec.update(
        image=str(parse_reference(image)),
        command=parse_argv(options.get("command"), "command"),
        entrypoint=parse_argv(options.get("entrypoint"), "entrypoint"),
        env=parse_env(options.get("env"), env_files),
        working_dir=options.get("working_dir") or None,
        user=str(options["user"]) if options.get("user") not in (None, "") else None,
        hostname=options.get("hostname") or None,
        labels=parse_labels(options.get("labels")),
        volumes=sorted(
            (parse_volume(item) for item in options.get("volumes") or ()), key=lambda v: (v["target"], v["source"])
        ),
        tmpfs=parse_tmpfs(options.get("tmpfs")),
        memory=parse_memory(options.get("memory")),
        cpus=parse_cpus(options.get("cpus")),
        cpu_shares=parse_positive_int(options.get("cpu_shares"), "cpu_shares"),
        pids_limit=parse_positive_int(options.get("pids_limit"), "pids_limit"),
        network_mode=parse_network_mode(options.get("network_mode")),
        published_ports=parse_ports(options.get("published_ports")),
        publish_all_ports=bool(options.get("publish_all_ports")),
        network_aliases=sorted(set(options.get("network_aliases") or ())),
        restart_policy=parse_restart_policy(options.get("restart_policy")),
        privileged=bool(options.get("privileged")),
        userns=userns.normalize(options.get("userns")),
        cap_add=parse_capabilities(options.get("cap_add"), "cap_add"),
        cap_drop=parse_capabilities(options.get("cap_drop"), "cap_drop"),
        read_only=bool(options.get("read_only")),
        systemd=parse_systemd(options.get("systemd")),
        stop_signal=parse_signal(options.get("stop_signal")),
        stop_timeout=parse_positive_int(options.get("stop_timeout"), "stop_timeout"),
        tty=bool(options.get("tty")),
        interactive=bool(options.get("interactive")),
        no_new_privileges=parse_optional_bool(options.get("no_new_privileges"), "no_new_privileges"),
    )
    if spec["working_dir"] is not None and not str(spec["working_dir"]).startswith("/"):
        raise _fail("working_dir", spec["working_dir"], "must be an absolute path")
    if spec["hostname"] is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}", spec["hostname"]):
        raise _fail("hostname", spec["hostname"], "is not a valid host name")
    if spec["privileged"] and spec["userns"] != userns.HOST:
        raise _fail("userns", spec["userns"], "cannot be combined with privileged: use userns host")
    if spec["network_mode"] != "bridge" and (spec["published_ports"] or spec["publish_all_ports"]):
        raise _fail("published_ports", options.get("published_ports"), "need network_mode bridge")
    targets = [volume["target"] for volume in spec["volumes"]] + list(spec["tmpfs"])
    duplicates = sorted({target for target in targets if targets.count(target) > 1})
    if duplicates:
        raise _fail("volumes", duplicates, "are mounted more than once")
    return spec


def _env_list_to_dict(env: Sequence[str]) -> Dict[str, str]:
    result: Dict[str, str] = {}
    for entry in env or ():
        key, _eq, value = entry.partition("=")
        result[key] = value
    return result


def effective(spec: Mapping[str, Any], image_config: Mapping[str, Any]) -> Dict[str, Any]:
    """What the container will really run with: the spec over the image's defaults.

    Docker's rules: an entrypoint given by the user drops the image's Cmd; a
    command replaces Cmd only; the environment is the image's with the user's
    variables over it (PATH set if neither has one); labels merge the same way.
    """
    config = image_config.get("config") or {}
    entrypoint = spec["entrypoint"] if spec["entrypoint"] is not None else list(config.get("Entrypoint") or [])
    if spec["command"] is not None:
        command = spec["command"]
    elif spec["entrypoint"] is not None:
        command = []
    else:
        command = list(config.get("Cmd") or [])
    args = list(entrypoint) + list(command)
    if not args:
        raise InvalidArgument(f"{spec['image']}: no command given and the image defines neither Entrypoint nor Cmd")
    env = _env_list_to_dict(config.get("Env") or [])
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(spec["env"])
    labels = dict(config.get("Labels") or {})
    labels.update(spec["labels"])
    systemd = spec["systemd"]
    if systemd == "auto":
        systemd = args[0] in SYSTEMD_COMMANDS
    if systemd and spec["userns"] != userns.HOST:
        raise _fail("userns", spec["userns"], "cannot run systemd, which mounts file systems: use userns host")
    stop_signal = spec["stop_signal"] or parse_signal(config.get("StopSignal")) or "SIGTERM"
    if systemd and not spec["stop_signal"]:
        stop_signal = "SIGRTMIN+3"
    return {
        "args": args,
        "env": [f"{key}={value}" for key, value in env.items()],
        "working_dir": spec["working_dir"] or config.get("WorkingDir") or "/",
        "user": spec["user"] if spec["user"] is not None else (config.get("User") or ""),
        "labels": labels,
        "stop_signal": stop_signal,
        "stop_timeout": spec["stop_timeout"] if spec["stop_timeout"] is not None else DEFAULT_STOP_TIMEOUT,
        "systemd": bool(systemd),
        "exposed_ports": sorted(config.get("ExposedPorts") or {}),
        "image_volumes": sorted(config.get("Volumes") or {}),
    }
