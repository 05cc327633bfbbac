"""docker-ce repository files for every tree, channel and mirror."""

import configparser
import itertools

import pytest

from ansible_collections.berth.containers.plugins.module_utils.engine import repo
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument

MIRRORS = [
    ("https://download.docker.com", "https://download.docker.com"),
    ("https://mirrors.aliyun.com/docker-ce/", "https://mirrors.aliyun.com/docker-ce"),
    ("http://127.0.0.1:8080/repos/docker", "http://127.0.0.1:8080/repos/docker"),
    ("file:///srv/mirror/docker-ce", "file:///srv/mirror/docker-ce"),
]
KEY = "file:///etc/pki/rpm-gpg/docker-ce.asc"


def _parse_yum(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def _parse_deb822(text: str) -> dict:
    fields = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _colon, value = line.partition(":")
        fields[name] = value.strip()
    return fields


@pytest.mark.parametrize(
    ("distribution", "channel", "mirror"),
    list(itertools.product(repo.YUM_DISTRIBUTIONS, repo.CHANNELS, MIRRORS)),
)
def test_yum_repo_points_every_section_at_the_base_url(distribution: str, channel: str, mirror: tuple) -> None:
    given, base = mirror
    text = repo.render_yum_repo(given, distribution, channel, KEY)
    parser = _parse_yum(text)
    expected_sections = [
        f"docker-ce-{name}{suffix}" for name in repo.CHANNELS for suffix in ("", "-debuginfo", "-source")
    ]
    assert parser.sections() == expected_sections
    root = f"{base}/linux/{distribution}/$releasever"
    for name in repo.CHANNELS:
        binary = parser[f"docker-ce-{name}"]
        assert binary["baseurl"] == f"{root}/$basearch/{name}"
        assert binary["name"] == f"Docker CE {name.capitalize()} - $basearch"
        assert binary["enabled"] == ("1" if name == channel else "0")
        assert parser[f"docker-ce-{name}-debuginfo"]["baseurl"] == f"{root}/debug-$basearch/{name}"
        assert parser[f"docker-ce-{name}-source"]["baseurl"] == f"{root}/source/{name}"
        assert parser[f"docker-ce-{name}-debuginfo"]["enabled"] == "0"
        assert parser[f"docker-ce-{name}-source"]["enabled"] == "0"
    for section in parser.sections():
        assert parser[section]["gpgcheck"] == "1"
        assert parser[section]["gpgkey"] == KEY
    assert "download.docker.com" not in text or base == "https://download.docker.com"


def test_yum_repo_exact_text_for_a_mirror_and_a_pinned_release() -> None:
    text = repo.render_yum_repo("https://mirror.example/docker-ce", "centos", "stable", KEY, release="9")
    assert text.startswith(repo.HEADER)
    assert (
        "[docker-ce-stable]\n"
        "name=Docker CE Stable - $basearch\n"
        "baseurl=https://mirror.example/docker-ce/linux/centos/9/$basearch/stable\n"
        "enabled=1\n"
        "gpgcheck=1\n"
        "gpgkey=file:///etc/pki/rpm-gpg/docker-ce.asc\n"
        "\n"
        "[docker-ce-stable-debuginfo]\n"
        "name=Docker CE Stable - Debuginfo $basearch\n"
        "baseurl=https://mirror.example/docker-ce/linux/centos/9/debug-$basearch/stable\n"
        "enabled=0\n"
    ) in text
    assert text.endswith("baseurl=https://mirror.example/docker-ce/linux/centos/9/source/nightly\nenabled=0\ngpgcheck=1\n"
                         "gpgkey=file:///etc/pki/rpm-gpg/docker-ce.asc\n")  # fmt: skip


@pytest.mark.parametrize(
    ("distribution", "channel", "mirror", "suite"),
    [
        (distribution, channel, mirror, suite)
        for distribution, suite in (("debian", "bookworm"), ("ubuntu", "noble"), ("raspbian", "bookworm"))
        for channel in repo.CHANNELS
        for mirror in MIRRORS
    ],
)
def test_apt_sources_for_every_tree_channel_and_mirror(
    distribution: str, channel: str, mirror: tuple, suite: str
) -> None:
    given, base = mirror
    text = repo.render_apt_sources(given, distribution, suite, channel, signed_by="/etc/apt/keyrings/docker.asc")
    assert _parse_deb822(text) == {
        "Types": "deb",
        "URIs": f"{base}/linux/{distribution}",
        "Suites": suite,
        "Components": channel,
        "Signed-By": "/etc/apt/keyrings/docker.asc",
    }


def test_apt_sources_exact_text_with_architectures() -> None:
    text = repo.render_apt_sources(
        "https://download.docker.com",
        "debian",
        "bookworm",
        "stable",
        signed_by="/etc/apt/keyrings/docker.asc",
        architectures=["amd64", "arm64"],
    )
    assert text == (
        repo.HEADER + "Types: deb\n"
        "URIs: https://download.docker.com/linux/debian\n"
        "Suites: bookworm\n"
        "Components: stable\n"
        "Architectures: amd64 arm64\n"
        "Signed-By: /etc/apt/keyrings/docker.asc\n"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: repo.render_yum_repo("https://x", "debian", "stable", KEY), "uses apt"),
        (lambda: repo.render_apt_sources("https://x", "centos", "9", "stable", signed_by="/k"), "uses yum"),
        (lambda: repo.render_yum_repo("https://x", "centos", "edge", KEY), "channel 'edge'"),
        (lambda: repo.render_yum_repo("https://x", "centos", "stable", KEY, release="9 8"), "single word"),
        (lambda: repo.render_apt_sources("https://x", "debian", "bookworm", "stable", signed_by="k.asc"), "absolute"),
        (lambda: repo.render_yum_repo("https://x", "suse", "stable", KEY), "not one of Docker's trees"),
        (lambda: repo.normalize_base_url("download.docker.com"), "must start with"),
        (lambda: repo.normalize_base_url("https:///docker"), "no host name"),
        (lambda: repo.normalize_base_url("https://mirror/docker?x=1"), "query or fragment"),
        (lambda: repo.normalize_base_url(""), "must be a URL"),
    ],
)
def test_invalid_input_is_refused_with_a_reason(call, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        call()


@pytest.mark.parametrize(
    ("os_release", "tree"),
    [
        ({"ID": "centos", "ID_LIKE": "rhel fedora"}, "centos"),
        ({"ID": "rocky", "ID_LIKE": "rhel centos fedora"}, "centos"),
        ({"ID": "almalinux", "ID_LIKE": "rhel centos fedora"}, "centos"),
        ({"ID": "ol", "ID_LIKE": "fedora"}, "centos"),
        ({"ID": "rhel", "ID_LIKE": "fedora"}, "rhel"),
        ({"ID": "fedora"}, "fedora"),
        ({"ID": "debian"}, "debian"),
        ({"ID": "ubuntu", "ID_LIKE": "debian"}, "ubuntu"),
        ({"ID": "linuxmint", "ID_LIKE": "ubuntu debian", "UBUNTU_CODENAME": "noble"}, "ubuntu"),
        ({"ID": "raspbian", "ID_LIKE": "debian"}, "raspbian"),
        ({"ID": "kali", "ID_LIKE": "debian"}, "debian"),
    ],
)
def test_tree_of_a_host(os_release: dict, tree: str) -> None:
    assert repo.distribution_from_os_release(os_release) == tree


def test_unknown_host_names_the_fix() -> None:
    with pytest.raises(InvalidArgument, match="set distribution"):
        repo.distribution_from_os_release({"ID": "opensuse-leap", "ID_LIKE": "suse opensuse"})


def test_os_release_parsing_and_suites() -> None:
    text = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n# comment\nUBUNTU_CODENAME=noble\n'
    fields = repo.parse_os_release(text)
    assert fields["NAME"] == "Ubuntu"
    assert repo.apt_suite_from_os_release(fields) == "noble"
    assert repo.apt_suite_from_os_release({"VERSION_CODENAME": "bookworm"}) == "bookworm"
    with pytest.raises(InvalidArgument, match="VERSION_CODENAME"):
        repo.apt_suite_from_os_release({"ID": "debian"})


def test_default_key_url_follows_the_mirror() -> None:
    assert repo.default_key_url("https://mirrors.aliyun.com/docker-ce/", "centos") == (
        "https://mirrors.aliyun.com/docker-ce/linux/centos/gpg"
    )


def test_duplicate_apt_lines_are_found() -> None:
    text = (
        "# old\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/docker.gpg] "
        "https://download.docker.com/linux/debian bookworm stable\n"
        "deb http://deb.debian.org/debian bookworm main\n"
    )
    found = repo.conflicting_apt_lines(text, "https://download.docker.com/linux/debian")
    assert len(found) == 1
    assert "signed-by=/usr/share/keyrings/docker.gpg" in found[0]
