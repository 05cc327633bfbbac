"""Is an existing container what a task asks for?  The comparison behind ``changed``.

Both sides are reduced to the same *view*: the options a user can set, in
canonical form, with the image's defaults merged in the way Docker merges
them (the command that really runs, the environment, labels, user, working
directory, stop signal).  So a task that spells out a default, reorders a
list or a dict, or writes ``64m`` for ``67108864`` compares equal, and a
newer image behind the same tag does not (images are compared by id).

Per option the user can pick how to compare (``comparisons``, with ``'*'``
for all): ``strict`` (equal), ``ignore``, or ``allow_more_present`` (the
container may have more entries in a list or dict than the task names).
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

# view key -> how it compares by default, and whether it is a collection.
OPTIONS: Dict[str, str] = {
    "image": "strict",
    "image_name": "strict",
    "command": "strict",
    "env": "strict",
    "working_dir": "strict",
    "user": "strict",
    "hostname": "strict",
    "labels": "strict",
    "volumes": "strict",
    "tmpfs": "strict",
    "memory": "strict",
    "cpus": "strict",
    "cpu_shares": "strict",
    "pids_limit": "strict",
    "network_mode": "strict",
    "published_ports": "strict",
    "publish_all_ports": "strict",
    "network_aliases": "strict",
    "restart_policy": "strict",
    "privileged": "strict",
    "userns": "strict",
    "cap_add": "strict",
    "cap_drop": "strict",
    "read_only": "strict",
    "systemd": "strict",
    "stop_signal": "strict",
    "stop_timeout": "strict",
    "tty": "strict",
    "interactive": "strict",
    "no_new_privileges": "strict",
}
MODES = ("strict", "ignore", "allow_more_present")
# Module option names that users know, mapped to the view keys they compare.
ALIASES = {"capabilities": "cap_add", "entrypoint": "command", "env_file": "env"}


def view(spec: Mapping[str, Any], effective: Mapping[str, Any], image_id: Optional[str]) -> Dict[str, Any]:
    """The comparable form of a container (existing) or of a task (requested)."""
    return {
        "image": image_id,
        "image_name": spec["image"],
        "command": list(effective["args"]),
        "env": dict(entry.partition("=")[::2] for entry in effective["env"]),
        "working_dir": effective["working_dir"],
        "user": effective["user"],
        "hostname": spec["hostname"],
        "labels": dict(effective["labels"]),
        "volumes": sorted(
            f"{v['source']}:{v['target']}:{'ro' if v['read_only'] else 'rw'}" for v in spec["volumes"] if v["source"]
        )
        + sorted(v["target"] for v in spec["volumes"] if not v["source"]),
        "tmpfs": dict(spec["tmpfs"]),
        "memory": spec["memory"],
        "cpus": spec["cpus"],
        "cpu_shares": spec["cpu_shares"],
        "pids_limit": spec["pids_limit"],
        "network_mode": spec["network_mode"],
        "published_ports": sorted(spec["published_ports"]),
        "publish_all_ports": spec["publish_all_ports"],
        "network_aliases": sorted(spec["network_aliases"]),
        "restart_policy": spec["restart_policy"],
        "privileged": spec["privileged"],
        "userns": spec["userns"],
        "cap_add": sorted(spec["cap_add"]),
        "cap_drop": sorted(spec["cap_drop"]),
        "read_only": spec["read_only"],
        "systemd": bool(effective["systemd"]),
        "stop_signal": effective["stop_signal"],
        "stop_timeout": effective["stop_timeout"],
        "tty": spec["tty"],
        "interactive": spec["interactive"],
        "no_new_privileges": spec.get("no_new_privileges"),
    }


def comparison_modes(requested: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """The mode of every view key, from the task's ``comparisons`` (``'*'`` sets all first)."""
    modes = dict(OPTIONS)
    requested = dict(requested or {})
    everything = requested.pop("*", None)
    if everything is not None:
        if everything not in ("strict", "ignore"):
            raise ValueError(f"comparisons: '*' must be strict or ignore, not {everything!r}")
        modes = dict.fromkeys(modes, everything)
    for option, mode in requested.items():
        key = ALIASES.get(option, option)
        if key not in modes:
            raise ValueError(f"comparisons: unknown option {option!r}; known: {', '.join(sorted(OPTIONS))}")
        if mode not in MODES:
            raise ValueError(f"comparisons: {option}: {mode!r} must be one of {', '.join(MODES)}")
        modes[key] = mode
    return modes


def _contains(existing: Any, requested: Any) -> bool:
    if isinstance(requested, dict) and isinstance(existing, dict):
        return all(key in existing and existing[key] == value for key, value in requested.items())
    if isinstance(requested, list) and isinstance(existing, list):
        return all(item in existing for item in requested)
    return existing == requested


def differences(
    existing: Mapping[str, Any], requested: Mapping[str, Any], modes: Mapping[str, str]
) -> List[Tuple[str, Any, Any]]:
    """``(option, existing value, requested value)`` for every option that differs."""
    result = []
    for key in OPTIONS:
        mode = modes.get(key, "strict")
        if mode == "ignore" or key not in requested:
            continue
        before, after = existing.get(key), requested[key]
        same = _contains(before, after) if mode == "allow_more_present" else before == after
        if not same:
            result.append((key, before, after))
    return result
