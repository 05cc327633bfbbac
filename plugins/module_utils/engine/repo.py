"""The docker-ce package repository, rendered for yum/dnf and for apt.

Docker publishes one tree per distribution under ``<base>/linux/<distro>/``:
``centos``, ``rhel`` and ``fedora`` hold yum repositories laid out as
``<releasever>/<basearch>/<channel>`` (with ``debug-<basearch>`` and
``source`` siblings), ``debian``, ``ubuntu`` and ``raspbian`` hold apt
repositories with one component per channel; the signing key of each tree
is ``<base>/linux/<distro>/gpg``.  Mirrors (Aliyun, Tsinghua, a company
Artifactory...) copy that layout below their own base URL, so rendering
every URL from one base is what makes a mirror really used -- unlike a
downloaded ``docker-ce.repo``, whose ``baseurl`` still points upstream.
Rocky, Alma, Oracle Linux and CentOS Stream use the ``centos`` tree, as
Docker's install documentation says.
"""

from typing import Dict, List, Optional, Sequence
from urllib.parse import urlsplit

from ..runtime.errors import InvalidArgument

UPSTREAM_BASE_URL = "https://download.docker.com"
# The key Docker signs docker-ce packages with (docs.docker.com/engine/install).
DOCKER_GPG_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
CHANNELS = ("stable", "test", "nightly")
YUM_DISTRIBUTIONS = ("centos", "rhel", "fedora")
APT_DISTRIBUTIONS = ("debian", "ubuntu", "raspbian")
DISTRIBUTIONS = YUM_DISTRIBUTIONS + APT_DISTRIBUTIONS
YUM_REPO_PATH = "/etc/yum.repos.d/docker-ce.repo"
APT_SOURCES_PATH = "/etc/apt/sources.list.d/docker.sources"
YUM_KEY_PATH = "/etc/pki/rpm-gpg/docker-ce.asc"
APT_KEY_PATH = "/etc/apt/keyrings/docker.asc"
HEADER = "# Managed by Ansible (berth.containers.engine_repo): local changes are overwritten.\n"

# os-release IDs (and ID_LIKE entries) -> Docker's tree, most specific first.
_TREE_OF_OS_ID = {
    "centos": "centos",
    "rocky": "centos",
    "almalinux": "centos",
    "ol": "centos",
    "circle": "centos",
    "rhel": "rhel",
    "fedora": "fedora",
    "debian": "debian",
    "ubuntu": "ubuntu",
    "raspbian": "raspbian",
}


def repository_format(distribution: str) -> str:
    """``yum`` or ``apt`` for one of Docker's distribution trees."""
    if distribution in YUM_DISTRIBUTIONS:
        return "yum"
    if distribution in APT_DISTRIBUTIONS:
        return "apt"
    raise InvalidArgument(f"distribution {distribution!r} is not one of Docker's trees: {', '.join(DISTRIBUTIONS)}")


def distribution_from_os_release(os_release: Dict[str, str]) -> str:
    """Docker's tree for a host, from the fields of its /etc/os-release."""
    os_id = os_release.get("ID", "").lower()
    candidates = [os_id, *os_release.get("ID_LIKE", "").lower().split()]
    # Ubuntu derivatives (Mint, Pop!_OS) name their Ubuntu base explicitly.
    if os_release.get("UBUNTU_CODENAME") and os_id not in _TREE_OF_OS_ID:
        return "ubuntu"
    for candidate in candidates:
        if candidate in _TREE_OF_OS_ID:
            return _TREE_OF_OS_ID[candidate]
    raise InvalidArgument(
        f"cannot tell which docker-ce tree serves this host (os-release ID {os_id!r}); "
        f"set distribution to one of {', '.join(DISTRIBUTIONS)}"
    )


def apt_suite_from_os_release(os_release: Dict[str, str]) -> str:
    """The codename apt needs (``bookworm``, ``noble``) from /etc/os-release."""
    suite = os_release.get("UBUNTU_CODENAME") or os_release.get("VERSION_CODENAME")
    if not suite:
        raise InvalidArgument("/etc/os-release names no VERSION_CODENAME: set release to the codename, e.g. bookworm")
    return suite


def parse_os_release(text: str) -> Dict[str, str]:
    """The KEY=value pairs of an os-release file (quotes removed)."""
    fields = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _equals, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[key.strip()] = value
    return fields


def normalize_base_url(url: str) -> str:
    """Validate a repository base URL (upstream or mirror) and drop the trailing slash."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidArgument("base_url must be a URL such as https://download.docker.com or a mirror of it")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https", "file", "ftp"):
        raise InvalidArgument(f"base_url {url!r} must start with https://, http://, ftp:// or file://")
    if parts.scheme != "file" and not parts.netloc:
        raise InvalidArgument(f"base_url {url!r} has no host name")
    if parts.query or parts.fragment:
        raise InvalidArgument(f"base_url {url!r} must not have a query or fragment")
    if any(char.isspace() for char in url.strip()):
        raise InvalidArgument(f"base_url {url!r} must not contain white space")
    return url.strip().rstrip("/")


def tree_url(base_url: str, distribution: str) -> str:
    """``<base>/linux/<distribution>``: the root of one distribution's repository."""
    repository_format(distribution)
    return f"{normalize_base_url(base_url)}/linux/{distribution}"


def default_key_url(base_url: str, distribution: str) -> str:
    """Where Docker (and its mirrors) publish the signing key of a tree."""
    return f"{tree_url(base_url, distribution)}/gpg"


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise InvalidArgument(f"channel {channel!r} must be one of {', '.join(CHANNELS)}")


def _check_token(name: str, value: str) -> None:
    if not value or any(char.isspace() or char in "[]#" for char in value):
        raise InvalidArgument(f"{name} {value!r} must be a single word (no spaces, '[', ']' or '#')")


def render_yum_repo(
    base_url: str,
    distribution: str,
    channel: str,
    gpgkey: str,
    *,
    release: str = "$releasever",
    basearch: str = "$basearch",
) -> str:
    """A ``docker-ce.repo`` with an explicit baseurl for every section.

    Upstream's file has, per channel, a binary, a debuginfo and a source
    section; only the binary section of the chosen channel is enabled, as
    Docker's install script leaves it.
    """
    if repository_format(distribution) != "yum":
        raise InvalidArgument(f"distribution {distribution!r} uses apt, not a yum .repo file")
    _check_channel(channel)
    _check_token("release", release)
    _check_token("basearch", basearch)
    _check_token("gpgkey", gpgkey)
    root = f"{tree_url(base_url, distribution)}/{release}"
    sections = [HEADER.rstrip("\n")]
    for name in CHANNELS:
        title = name.capitalize()
        variants = (
            ("", f"Docker CE {title} - {basearch}", f"{root}/{basearch}/{name}", name == channel),
            ("-debuginfo", f"Docker CE {title} - Debuginfo {basearch}", f"{root}/debug-{basearch}/{name}", False),
            ("-source", f"Docker CE {title} - Sources", f"{root}/source/{name}", False),
        )
        for suffix, description, baseurl, enabled in variants:
            sections.append(
                f"[docker-ce-{name}{suffix}]\n"
                f"name={description}\n"
                f"baseurl={baseurl}\n"
                f"enabled={int(enabled)}\n"
                "gpgcheck=1\n"
                f"gpgkey={gpgkey}"
            )
    return "\n\n".join(sections) + "\n"


def render_apt_sources(
    base_url: str,
    distribution: str,
    suite: str,
    channel: str,
    *,
    signed_by: str,
    architectures: Optional[Sequence[str]] = None,
) -> str:
    """A deb822 ``docker.sources`` whose ``Signed-By`` names the installed key file."""
    if repository_format(distribution) != "apt":
        raise InvalidArgument(f"distribution {distribution!r} uses yum/dnf, not apt sources")
    _check_channel(channel)
    _check_token("release", suite)
    if not signed_by.startswith("/"):
        raise InvalidArgument(f"the key path {signed_by!r} must be absolute for apt's Signed-By")
    lines: List[str] = [
        HEADER.rstrip("\n"),
        "Types: deb",
        f"URIs: {tree_url(base_url, distribution)}",
        f"Suites: {suite}",
        f"Components: {channel}",
    ]
    if architectures:
        for arch in architectures:
            _check_token("architecture", arch)
        lines.append(f"Architectures: {' '.join(architectures)}")
    lines.append(f"Signed-By: {signed_by}")
    return "\n".join(lines) + "\n"


def conflicting_apt_lines(text: str, uri: str) -> List[str]:
    """Lines of a one-line-style ``.list`` file that point at the same repository.

    apt refuses to work when one repository is configured twice with
    different ``Signed-By`` keys, which is what a hand-made docker.list next to
    the managed docker.sources usually is.
    """
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("deb") and uri.rstrip("/") in stripped:
            found.append(stripped)
    return found
