"""Self-test of the local docker-ce repositories (support/engine_repos.py).

Each repository is used the way the docker_engine role uses a mirror:
engine_repo (run by ansible-playbook) writes the repository file and
downloads the key from the loopback server, checked by fingerprint; then the
real package manager resolves, downloads and verifies the packages -- apt into
temporary state directories, dnf into an empty --installroot (Debian ships
dnf and rpm).  A key that did not sign the repository must be refused.
"""

import os
import shutil
import subprocess
import tempfile
from typing import Dict, Iterator, List, Tuple

import pytest
from support import engine_repos
from support.ansible_run import run_module
from support.dockerd import dockerd

pytestmark = pytest.mark.root

UNIT_FIXTURES = os.path.join(
    os.path.dirname(__file__), "..", "..", "unit", "plugins", "module_utils", "engine", "fixtures"
)
PACKAGES = ["docker-ce", "docker-ce-cli", "containerd.io"]


@pytest.fixture(scope="module")
def served() -> Iterator[Tuple[engine_repos.EngineRepos, str]]:
    repos = engine_repos.build()
    with engine_repos.serve(repos.root) as url:
        yield repos, url


@pytest.fixture
def workdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="berth-repos-") as directory:
        yield directory


def write_repo(url: str, fingerprint: str, workdir: str, distribution: str, release: str, path: str) -> Dict:
    result = run_module(
        "berth.containers.engine_repo",
        {
            "base_url": url,
            "distribution": distribution,
            "release": release,
            "gpg_fingerprint": fingerprint,
            "path": path,
            "gpg_key_path": os.path.join(workdir, "keys", "docker.asc"),
        },
    )
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["gpg_fingerprint"] == fingerprint
    return result


def apt_options(workdir: str) -> List[str]:
    """apt with every state directory in *workdir* (and a copy of dpkg's status): the host's apt is untouched."""
    for directory in ("state/lists/partial", "cache/archives/partial", "dpkg"):
        os.makedirs(os.path.join(workdir, directory), exist_ok=True)
    shutil.copy("/var/lib/dpkg/status", os.path.join(workdir, "dpkg", "status"))
    return [
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", f"Dir::Etc::SourceParts={workdir}/sources.list.d",
        "-o", f"Dir::State={workdir}/state",
        "-o", f"Dir::State::status={workdir}/dpkg/status",
        "-o", f"Dir::Cache={workdir}/cache",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def run(argv: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def assert_engine_starts_from(root: str) -> None:
    """Start the dockerd installed below *root* (its containerd, runc, docker-init too) and ask it."""
    bin_dir = os.path.join(root, "usr", "bin")
    with dockerd({"registry-mirrors": ["https://mirror.example.com"]}, binary=os.path.join(bin_dir, "dockerd"),
                 bin_dirs=(bin_dir,)) as daemon:  # fmt: skip
        assert daemon.executable() == os.path.join(bin_dir, "dockerd")
        with open(os.path.join(daemon.exec_root, "containerd", "containerd.pid"), encoding="utf-8") as handle:
            containerd = int(handle.read())
        assert os.readlink(f"/proc/{containerd}/exe") == os.path.join(bin_dir, "containerd")
        info = run_module("berth.containers.engine_info", {"docker_host": daemon.docker_host})
        assert info["engine"]["registry_mirrors"] == ["https://mirror.example.com/"]
        assert "runc" in info["engine"]["runtimes"]


def test_apt_repository_installs_docker_ce_from_the_mirror(served, workdir: str) -> None:
    repos, url = served
    sources = os.path.join(workdir, "sources.list.d", "docker.sources")
    result = write_repo(url, repos.fingerprint, workdir, "debian", "bookworm", sources)
    assert f"URIs: {url}/linux/debian\n" in result["content"]
    options = apt_options(workdir)
    update = run(["apt-get", *options, "update"])
    assert update.returncode == 0, update.stderr
    assert f"{url}/linux/debian bookworm InRelease" in update.stdout
    assert "NO_PUBKEY" not in update.stderr
    assert "not signed" not in update.stderr
    download = run(["apt-get", *options, "-y", "--download-only", "install", *PACKAGES])
    assert download.returncode == 0, download.stdout + download.stderr
    archives = sorted(os.listdir(os.path.join(workdir, "cache", "archives")))
    assert sorted(name.split("_")[0] for name in archives if name.endswith(".deb")) == sorted(PACKAGES)
    policy = run(["apt-cache", *options, "policy", "docker-ce"])
    assert f"5:{repos.version}-1~debian.12~bookworm" in policy.stdout
    unpacked = os.path.join(workdir, "unpacked")
    for name in archives:
        if name.endswith(".deb"):
            assert run(["dpkg-deb", "-x", os.path.join(workdir, "cache", "archives", name), unpacked]).returncode == 0
    assert_engine_starts_from(unpacked)


def test_apt_refuses_the_repository_with_another_key(served, workdir: str) -> None:
    url = served[1]
    os.makedirs(os.path.join(workdir, "sources.list.d"))
    with open(os.path.join(workdir, "sources.list.d", "docker.sources"), "w", encoding="utf-8") as handle:
        handle.write(
            f"Types: deb\nURIs: {url}/linux/debian\nSuites: bookworm\nComponents: stable\n"
            f"Signed-By: {os.path.abspath(os.path.join(UNIT_FIXTURES, 'docker-ce.asc'))}\n"
        )
    update = run(["apt-get", *apt_options(workdir), "update"])
    assert "NO_PUBKEY" in update.stderr or "not signed" in update.stderr, update.stdout + update.stderr


def dnf(workdir: str, *arguments: str) -> subprocess.CompletedProcess:
    return run(
        [
            "dnf",
            "-y",
            f"--installroot={workdir}/root",
            f"--setopt=reposdir={workdir}/yum.repos.d",
            f"--setopt=cachedir={workdir}/cache",
            "--setopt=install_weak_deps=False",
            "--releasever=9",
            "--nodocs",
            *arguments,
        ]
    )


@pytest.mark.parametrize("tree", engine_repos.EL_TREES)
def test_dnf_installs_signed_docker_ce_into_an_empty_root(served, workdir: str, tree: str) -> None:
    repos, url = served
    repo_file = os.path.join(workdir, "yum.repos.d", "docker-ce.repo")
    result = write_repo(url, repos.fingerprint, workdir, tree, "9", repo_file)
    assert f"baseurl={url}/linux/{tree}/9/$basearch/stable" in result["content"]
    installed = dnf(workdir, "install", *PACKAGES)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Key imported successfully" in installed.stdout + installed.stderr
    root = os.path.join(workdir, "root")
    for binary in ("dockerd", "docker", "containerd", "containerd-shim-runc-v2", "runc", "docker-init"):
        assert os.access(os.path.join(root, "usr", "bin", binary), os.X_OK), binary
    assert os.path.exists(os.path.join(root, "lib", "systemd", "system", "docker.service"))
    query = run(["rpm", "--root", root, "-q", "--qf", "%{NAME} %{EPOCH}:%{VERSION}\n", *PACKAGES])
    assert query.stdout.splitlines() == [
        f"docker-ce 3:{repos.version}",
        f"docker-ce-cli 3:{repos.version}",
        f"containerd.io 0:{engine_repos.upstream_version(engine_repos.debian_versions()['containerd'])}",
    ]
    keys = run(["rpm", "--root", root, "-q", "gpg-pubkey", "--qf", "%{VERSION}\n"])
    assert keys.stdout.strip().upper() == repos.fingerprint[-8:]
    packages = os.path.join(repos.root, "linux", tree, "9", "x86_64", "stable", "Packages")
    checked = run(["rpm", "--root", root, "-K", *sorted(os.path.join(packages, name) for name in os.listdir(packages))])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("digests signatures OK") == 3
    assert_engine_starts_from(root)


def test_dnf_refuses_packages_signed_by_another_key(served, workdir: str) -> None:
    url = served[1]
    os.makedirs(os.path.join(workdir, "yum.repos.d"))
    other_key = os.path.abspath(os.path.join(UNIT_FIXTURES, "docker-ce.asc"))
    with open(os.path.join(workdir, "yum.repos.d", "docker-ce.repo"), "w", encoding="utf-8") as handle:
        handle.write(
            f"[docker-ce-stable]\nname=wrong key\nbaseurl={url}/linux/centos/9/$basearch/stable\n"
            f"enabled=1\ngpgcheck=1\ngpgkey=file://{other_key}\n"
        )
    refused = dnf(workdir, "install", "docker-ce")
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "GPG" in output or "signature" in output.lower(), output
    assert not os.path.exists(os.path.join(workdir, "root", "usr", "bin", "dockerd"))


def test_dnf_installs_the_signed_standin_of_the_el_baseos_repository(served, workdir: str) -> None:
    repos, url = served
    os.makedirs(os.path.join(workdir, "yum.repos.d"))
    with open(os.path.join(workdir, "yum.repos.d", "baseos.repo"), "w", encoding="utf-8") as handle:
        handle.write(
            f"[baseos]\nname=BaseOS stand-in\nbaseurl={url}/{engine_repos.BASEOS_DIR}\n"
            f"enabled=1\ngpgcheck=1\ngpgkey=file://{repos.public_key}\n"
        )
    installed = dnf(workdir, "install", "dnf-plugins-core")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    root = os.path.join(workdir, "root")
    query = run(["rpm", "--root", root, "-q", "--qf", "%{NAME} %{ARCH} %{SUMMARY}\n", "dnf-plugins-core"])
    assert query.stdout == f"dnf-plugins-core noarch {engine_repos.STANDIN_SUMMARY}\n"
    files = run(["rpm", "--root", root, "-ql", "dnf-plugins-core"])
    assert files.stdout.strip() == "(contains no files)"
