"""Real Debian root filesystems for fixture images, built offline from the apt mirror.

* ``debootstrap`` runs ``debootstrap --variant=minbase SUITE DIR MIRROR``.
* ``install_in_overlay`` installs packages with apt in a chroot over an
  overlayfs whose lower dir is a finished rootfs: the upper dir is exactly the
  new layer (``oci.entries_from_dir(upper, overlay=True)`` turns its whiteouts
  and opaque dirs into OCI form).  A ``policy-rc.d`` that exits 101 keeps
  services from starting.

Both run inside a private mount namespace (``unshare --mount``), so the
mounts they need (proc, the overlay, /dev) vanish with the process even when
it is killed -- nothing is ever left mounted on the host.
"""

import glob
import os
import shutil
import subprocess
from typing import List, Sequence

DEFAULT_MIRROR = "http://deb.debian.org/debian"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


class DebianBuildError(RuntimeError):
    """debootstrap or apt failed; the message carries the end of their output."""


def debian_mirror(suite: str = "bookworm") -> str:
    """The Debian mirror this machine's apt uses for *suite* (not the security archive)."""
    candidates: List[str] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        candidates += _deb822_uris(path, suite)
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        candidates += _one_line_uris(path, suite)
    for uri in candidates:
        if "security" not in uri:
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _deb822_uris(path: str, suite: str) -> List[str]:
    uris = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        stanzas = handle.read().split("\n\n")
    for stanza in stanzas:
        fields = {}
        for line in stanza.splitlines():
            if line.strip() and not line.startswith(("#", " ")) and ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and suite in fields.get("suites", []):
            uris += fields.get("uris", [])
    return uris


def _one_line_uris(path: str, suite: str) -> List[str]:
    uris: List[str] = []
    if not os.path.exists(path):
        return uris
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            words = [w for w in line.split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                uris.append(words[1])
    return uris


def _run(argv: Sequence[str], what: str, timeout: float) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise DebianBuildError(f"{what} failed (exit {result.returncode}):\n{output}")


def debootstrap(target: str, suite: str, mirror: str, variant: str = "minbase") -> None:
    """A fresh *suite* rootfs in *target* (inside a private mount namespace)."""
    if not shutil.which("debootstrap"):
        raise DebianBuildError("debootstrap is not installed: run `make setup` (apt-get install debootstrap)")
    _run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "debootstrap",
            f"--variant={variant}",
            suite,
            target,
            mirror,
        ],
        f"debootstrap {suite} from {mirror}",
        timeout=1200,
    )


def clean_rootfs(rootfs: str) -> None:
    """Make a debootstrapped tree image-like: no cached debs, no apt lists, empty /dev, neutral host files."""
    patterns = ["var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*", "dev/*"]
    patterns.append("var/log/bootstrap.log")
    for pattern in patterns:
        for path in glob.glob(os.path.join(rootfs, pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                if os.path.basename(path) != "partial":
                    shutil.rmtree(path)
            else:
                os.unlink(path)
    # The runtime provides these per container; in the image they are placeholders.
    for name, content in (("etc/resolv.conf", ""), ("etc/hostname", "localhost\n")):
        path = os.path.join(rootfs, name)
        if os.path.lexists(path):
            os.unlink(path)
        with open(path, "w", encoding="ascii") as handle:
            handle.write(content)
        os.chmod(path, 0o644)


_INSTALL_SCRIPT = r"""
set -eu
lower=$1 upper=$2 work=$3 merged=$4 recipe=$5
shift 5
options="lowerdir=$lower,upperdir=$upper,workdir=$work,index=off,redirect_dir=off,metacopy=off"
mount -t overlay overlay -o "$options" "$merged"
mount -t proc proc "$merged/proc"
mount --bind /dev "$merged/dev"
mount --bind /etc/resolv.conf "$merged/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$merged/usr/sbin/policy-rc.d"
chmod 0755 "$merged/usr/sbin/policy-rc.d"
chroot "$merged" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@" \
  /bin/sh -eu -c "$recipe"
rm -f "$merged/usr/sbin/policy-rc.d"
"""


def install_in_overlay(lower: str, scratch: str, packages: Sequence[str], post: Sequence[str] = ()) -> str:
    """Install *packages* (and run *post* shell commands) over *lower*; returns the overlay upper dir.

    *scratch* must be an empty directory on a filesystem with trusted xattrs
    (upper, work and merged are made inside it).  apt's lists and caches are
    removed again, so the layer holds only what the packages brought.
    """
    upper, work, merged = (os.path.join(scratch, d) for d in ("upper", "work", "merged"))
    for path in (upper, work, merged):
        os.makedirs(path)
    os.chmod(upper, os.stat(lower).st_mode & 0o7777)
    recipe = " && ".join(
        [
            "apt-get update -q",
            "apt-get install -y -q --no-install-recommends " + " ".join(packages),
            "apt-get clean",
            # Not `rm -rf lists/*`: that would white out lists/partial, which the base layer has.
            "find /var/lib/apt/lists -mindepth 1 -maxdepth 1 ! -name partial -exec rm -rf {} +",
            "rm -f /var/cache/apt/*.bin",
            *post,
        ]
    )
    env = dict(os.environ, CHROOT_PATH=CHROOT_PATH)
    argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _INSTALL_SCRIPT]
    argv += ["install", lower, upper, work, merged, recipe]
    # apt in the chroot sees a clean environment; a proxy the host needs is passed on.
    argv += [f"{name}={os.environ[name]}" for name in PROXY_VARIABLES if os.environ.get(name)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800, env=env)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise DebianBuildError(f"installing {' '.join(packages)} over {lower} failed:\n{output}")
    shutil.rmtree(work, ignore_errors=True)
    return upper
