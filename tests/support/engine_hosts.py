"""Images of the docker_engine role's Molecule instances: a Debian host and one that presents itself as Rocky 9.

Both are Debian bookworm underneath, built like the other recipes of
support/images.py (apt in a chroot over an overlay, one cached layer over the
Debian base), with systemd as PID 1, python3 for Ansible and the libraries
and tools the docker-ce packages of support/engine_repos.py need at run time
(iptables, libdevmapper) already installed.  The instances reach no
distribution archive: Debian's apt sources are removed, and the package
sources they get are the local mirrors on their own loopback.

``DEBIAN_ENGINE_HOST`` -- Debian 12 with ``python3-apt`` (the binding
``ansible.builtin.apt`` uses).

``EL_ENGINE_HOST`` -- presents itself as Rocky Linux 9.5 to Ansible's facts
(``os_family: RedHat``), to engine_repo and to testinfra: Rocky's
``/etc/os-release`` and ``/etc/rocky-release`` (``redhat-release`` and
``system-release`` link to it), no ``/etc/debian_version``; a working ``dnf``
(Debian's dnf 4.14 and its Python binding, which ``ansible.builtin.dnf``
uses) over an empty rpm database, with ``releasever`` 9 in ``/etc/dnf/vars``
(on EL the release package provides it).  Its processes are Debian's
binaries; what dnf installs are the RPMs of support/engine_repos.py, which
carry Debian's docker binaries, so the engine really starts.
"""

from typing import Tuple

from . import images
from .images import DebianRecipe
from .oci import History, ImageConfig

SYSTEMD_HOST = ("systemd", "systemd-sysv", "python3", "ca-certificates")
ENGINE_RUNTIME_DEPENDENCIES = ("iptables", "libdevmapper1.02.1", "libseccomp2")
COMMON_POST: Tuple[str, ...] = (
    # Every container gets its own machine id: ship the "uninitialised" empty file.
    ": > /etc/machine-id",
    "rm -f /var/lib/dbus/machine-id",
    # A privileged container sees the host's /dev/tty*: no login prompts on them (they fail and degrade the boot).
    "systemctl mask getty.target getty@.service autovt@.service",
    # No route to Debian's archive from an instance: its package sources are the scenario's mirrors.
    "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*",
    "rm -rf /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log",
)
ROCKY_RELEASE = "Rocky Linux release 9.5 (Blue Onyx)"
ROCKY_OS_RELEASE = (
    'NAME="Rocky Linux"',
    'VERSION="9.5 (Blue Onyx)"',
    'ID="rocky"',
    'ID_LIKE="rhel centos fedora"',
    'VERSION_ID="9.5"',
    'PLATFORM_ID="platform:el9"',
    'PRETTY_NAME="Rocky Linux 9.5 (Blue Onyx)"',
    'ANSI_COLOR="0;32"',
    'CPE_NAME="cpe:/o:rocky:rocky:9::baseos"',
    'HOME_URL="https://rockylinux.org/"',
    'REDHAT_SUPPORT_PRODUCT="Rocky Linux"',
    'REDHAT_SUPPORT_PRODUCT_VERSION="9.5"',
)


def _image_config(name: str) -> ImageConfig:
    return ImageConfig(
        env=[images.BASE_PATH],
        cmd=["/sbin/init"],
        stop_signal="SIGRTMIN+3",
        labels={"org.berth.fixture": name},
    )


def _history(what: str) -> Tuple[History, ...]:
    return (
        History(what),
        History("STOPSIGNAL SIGRTMIN+3", empty_layer=True),
        History('CMD ["/sbin/init"]', empty_layer=True),
    )


DEBIAN_ENGINE_HOST = DebianRecipe(
    name="debian-engine-host",
    packages=(*SYSTEMD_HOST, "python3-apt", *ENGINE_RUNTIME_DEPENDENCIES),
    post=COMMON_POST,
    config=_image_config("debian-engine-host"),
    history=_history("apt-get install systemd python3 python3-apt iptables libdevmapper; no apt sources"),
)

EL_ENGINE_HOST = DebianRecipe(
    name="rocky9-engine-host",
    packages=(*SYSTEMD_HOST, "dnf", "rpm", *ENGINE_RUNTIME_DEPENDENCIES),
    post=(
        *COMMON_POST,
        "printf '%s\\n' " + " ".join(f"'{line}'" for line in ROCKY_OS_RELEASE) + " > /usr/lib/os-release",
        "ln -sf ../usr/lib/os-release /etc/os-release",
        f"echo '{ROCKY_RELEASE}' > /etc/rocky-release",
        "ln -sf rocky-release /etc/redhat-release",
        "ln -sf rocky-release /etc/system-release",
        "echo 'cpe:/o:rocky:rocky:9::baseos' > /etc/system-release-cpe",
        "rm -f /etc/debian_version",
        "mkdir -p /etc/dnf/vars /etc/yum.repos.d /etc/pki/rpm-gpg",
        "echo 9 > /etc/dnf/vars/releasever",
        "rpm --initdb",
    ),
    config=_image_config("rocky9-engine-host"),
    history=_history("apt-get install systemd python3 dnf rpm iptables libdevmapper; Rocky 9 release files"),
)

RECIPES = {recipe.name: recipe for recipe in (DEBIAN_ENGINE_HOST, EL_ENGINE_HOST)}


def engine_host_images(name: str) -> images.FixtureImages:
    """The cached layout (tag ``latest``) of the recipe *name* (about a minute cold)."""
    try:
        recipe = RECIPES[name]
    except KeyError:
        raise ValueError(f"no engine host image {name!r}; choose one of {', '.join(RECIPES)}") from None
    return images.debian_recipe_images(recipe)
