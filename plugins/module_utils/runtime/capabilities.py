"""Linux capabilities by name, Docker's default set, and ``cap_add``/``cap_drop``.

A container gets Docker's 14 capabilities in its bounding, permitted and
effective sets; inheritable and ambient stay empty (CVE-2022-24769,
CVE-2016-8867).  Sets are 64-bit masks indexed by capability number.
"""

from typing import Iterable, List

from .errors import InvalidArgument

# Index = capability number (linux/capability.h).
NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: number for number, name in enumerate(NAMES)}

DOCKER_DEFAULT = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


def mask_of(names: Iterable[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << NUMBERS[name]
    return mask


def names_of(mask: int) -> List[str]:
    return [name for number, name in enumerate(NAMES) if mask >> number & 1]


def normalise(name: str) -> str:
    """``net_admin``, ``NET_ADMIN`` and ``CAP_NET_ADMIN`` are the same; ``ALL`` stays ``ALL``."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in NUMBERS:
        raise InvalidArgument(f"unknown capability {name!r}: use a name like NET_ADMIN or CAP_NET_ADMIN, or ALL")
    return upper


def resolve(privileged: bool, cap_add: Iterable[str], cap_drop: Iterable[str], available: int) -> int:
    """The capability mask of a container, with Docker's precedence rules.

    ``privileged`` gives everything *available* (what the caller itself holds);
    ``cap_add: [ALL]`` gives everything but the drops; ``cap_drop: [ALL]``
    keeps only the adds; otherwise the default set minus drops plus adds.
    A default capability the caller lacks is left out quietly; an added one
    is an error, because it could not be granted.
    """
    if privileged:
        return available
    adds = [normalise(name) for name in cap_add]
    drops = [normalise(name) for name in cap_drop]
    if "ALL" in adds:
        mask = available & ~mask_of(name for name in drops if name != "ALL")
    elif "ALL" in drops:
        mask = mask_of(adds)
    else:
        mask = (mask_of(DOCKER_DEFAULT) & available & ~mask_of(drops)) | mask_of(adds)
    missing = mask_of(name for name in adds if name != "ALL") & ~available
    if missing:
        raise InvalidArgument(
            f"capability {', '.join(names_of(missing))} is not available in this environment "
            "(the calling process does not hold it); remove it from cap_add"
        )
    return mask
