"""Local docker-ce repositories, apt and yum, signed with a test key and served on loopback.

The docker_engine role installs ``docker-ce``, ``docker-ce-cli`` and
``containerd.io`` from Docker's repository or a mirror of it.  Without
internet, this module builds that repository: the three packages are made
from the binaries of Debian's ``docker.io``, ``containerd``, ``runc`` and
``tini`` (so the engine they install really starts), as .deb with
``dpkg-deb`` and as .rpm with ``rpmbuild``; the apt index is written here and
signed (InRelease, Release.gpg), the yum index is made with ``createrepo_c``
and every RPM is signed with ``rpmsign``.  The tree copies Docker's layout
below a base URL, so ``engine_repo``/the role use it exactly like a mirror::

    <base>/linux/debian/gpg                                 the public key
    <base>/linux/debian/dists/bookworm/{InRelease,Release,Release.gpg}
    <base>/linux/debian/dists/bookworm/stable/binary-amd64/Packages(.gz)
    <base>/linux/debian/pool/stable/*.deb
    <base>/linux/centos/gpg, <base>/linux/rhel/gpg
    <base>/linux/{centos,rhel}/{8,9,10}/x86_64/stable/{Packages/*.rpm,repodata/}

    <base>/el-baseos/{repodata/,Packages/*.rpm}             a stand-in for an EL BaseOS repository

The stand-in BaseOS repository holds one empty ``dnf-plugins-core`` package:
an EL host gets that package from its distribution, which these machines
cannot reach, and the role installs it as the engine's dependency on EL 8+.

The build is cached under /var/tmp/berth-fixtures/engine-repos-<key>/ (key:
this file and the versions of the Debian packages used) and takes about a
minute the first time.  The packaged units carry the settings of Docker's
own units (``LimitNPROC=infinity``, ``TasksMax=infinity``,
``OOMScoreAdjust``...): systemd lowers a limit it cannot raise to the hard
limit and ignores an OOM score it may not set, so they start even where root
lacks CAP_SYS_RESOURCE (measured in a berth systemd container here).
"""

import contextlib
import glob
import gzip
import hashlib
import http.server
import os
import shutil
import subprocess
import tempfile
import textwrap
import threading
from typing import Dict, Iterator, List, NamedTuple, Tuple

from support.cache import build_info, cached, recipe_key, source_of

DEB_SUITE = "bookworm"
DEB_ARCH = "amd64"
RPM_ARCH = "x86_64"
EL_TREES = ("centos", "rhel")
EL_RELEASES = ("8", "9", "10")
COMPONENT = "stable"
DEBIAN_PACKAGES = ("docker.io", "containerd", "runc", "tini")
KEY_UID = "Berth test docker-ce repository <docker-ce-test@berth.invalid>"
BASEOS_DIR = "el-baseos"
STANDIN_SUMMARY = "Empty stand-in for the EL package (berth test BaseOS repository)"

# package -> (files: (source on this host, path in the package), description)
CONTENTS: Dict[str, Tuple[List[Tuple[str, str]], str]] = {
    "containerd.io": (
        [
            ("/usr/bin/containerd", "usr/bin/containerd"),
            ("/usr/bin/containerd-shim-runc-v2", "usr/bin/containerd-shim-runc-v2"),
            ("/usr/bin/ctr", "usr/bin/ctr"),
            ("/usr/sbin/runc", "usr/bin/runc"),
        ],
        "containerd and runc (test build from Debian's binaries)",
    ),
    "docker-ce-cli": ([("/usr/bin/docker", "usr/bin/docker")], "the docker CLI (test build from Debian's binary)"),
    "docker-ce": (
        [
            ("/usr/sbin/dockerd", "usr/bin/dockerd"),
            ("/usr/sbin/docker-proxy", "usr/bin/docker-proxy"),
            ("/usr/bin/docker-init", "usr/bin/docker-init"),
        ],
        "the Docker engine (test build from Debian's dockerd)",
    ),
}
UNITS = {
    "containerd.io": {
        "lib/systemd/system/containerd.service": """\
            [Unit]
            Description=containerd container runtime (berth test package)
            After=network.target local-fs.target

            [Service]
            ExecStartPre=-/sbin/modprobe overlay
            ExecStart=/usr/bin/containerd
            Type=notify
            Delegate=yes
            KillMode=process
            Restart=always
            RestartSec=5
            # The limits containerd.io's unit asks for.
            LimitNPROC=infinity
            LimitCORE=infinity
            LimitNOFILE=infinity
            TasksMax=infinity
            OOMScoreAdjust=-999

            [Install]
            WantedBy=multi-user.target
            """,
    },
    "docker-ce": {
        "lib/systemd/system/docker.service": """\
            [Unit]
            Description=Docker Application Container Engine (berth test package)
            After=network-online.target docker.socket firewalld.service containerd.service time-set.target
            Wants=network-online.target containerd.service
            Requires=docker.socket

            [Service]
            Type=notify
            ExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock
            ExecReload=/bin/kill -s HUP $MAINPID
            TimeoutStartSec=0
            RestartSec=2
            Restart=always
            StartLimitBurst=3
            StartLimitInterval=60s
            # The limits docker-ce's unit asks for.
            LimitNPROC=infinity
            LimitCORE=infinity
            TasksMax=infinity
            Delegate=yes
            KillMode=process
            OOMScoreAdjust=-500

            [Install]
            WantedBy=multi-user.target
            """,
        "lib/systemd/system/docker.socket": """\
            [Unit]
            Description=Docker Socket for the API

            [Socket]
            ListenStream=/run/docker.sock
            SocketMode=0660
            SocketUser=root
            SocketGroup=docker

            [Install]
            WantedBy=sockets.target
            """,
    },
}
DEB_DEPENDS = {
    "containerd.io": "libc6, libseccomp2",
    "docker-ce-cli": "libc6",
    "docker-ce": "containerd.io (>= 1.6), docker-ce-cli, iptables, libc6, libdevmapper1.02.1, libsystemd0",
}
DEB_CONFLICTS = {"containerd.io": "containerd, runc", "docker-ce": "docker.io, docker-engine", "docker-ce-cli": ""}
RPM_REQUIRES = {"containerd.io": [], "docker-ce-cli": [], "docker-ce": ["containerd.io", "docker-ce-cli"]}


class EngineRepos(NamedTuple):
    """A built repository tree and what identifies its key."""

    root: str  # the directory to serve; the base URL maps to it
    fingerprint: str
    public_key: str  # path of the armored public key
    version: str  # the upstream version the packages carry (Debian's docker.io)


def _run(argv: List[str], **kwargs: object) -> str:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return completed.stdout


def debian_versions() -> Dict[str, str]:
    """The installed versions of the Debian packages the repository is made from."""
    output = _run(["dpkg-query", "-W", "-f=${Package} ${Version}\\n", *DEBIAN_PACKAGES])
    return dict(line.split(" ", 1) for line in output.splitlines() if line)


def upstream_version(debian_version: str) -> str:
    """``20.10.24+dfsg1-1+deb12u1+b6`` -> ``20.10.24``."""
    return debian_version.split(":")[-1].split("+")[0].split("-")[0].split("~")[0]


def _package_version(package: str, versions: Dict[str, str]) -> str:
    """containerd.io carries containerd's version, the docker packages docker.io's."""
    return upstream_version(versions["containerd" if package == "containerd.io" else "docker.io"])


class _Signer:
    """A throw-away GnuPG home with one RSA signing key (rpm's OpenPGP parser wants RSA)."""

    def __init__(self, home: str) -> None:
        self.home = home
        os.makedirs(home, mode=0o700, exist_ok=True)
        self.env = dict(os.environ, GNUPGHOME=home)
        _run(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", KEY_UID, "rsa3072", "sign", "never"], env=self.env
        )
        colons = _run(["gpg", "--batch", "--with-colons", "--list-keys", KEY_UID], env=self.env)
        self.fingerprint = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))

    def export(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(_run(["gpg", "--batch", "--armor", "--export", self.fingerprint], env=self.env))

    def sign(self, source: str, target: str, clear: bool) -> None:
        mode = ["--clearsign"] if clear else ["--armor", "--detach-sign"]
        _run(
            ["gpg", "--batch", "--yes", "--local-user", self.fingerprint, *mode, "--output", target, source],
            env=self.env,
        )

    def sign_rpms(self, paths: List[str]) -> None:
        _run(
            [
                "rpmsign",
                "--define",
                f"__gpg {shutil.which('gpg') or '/usr/bin/gpg'}",
                "--define",
                f"_gpg_path {self.home}",
                "--define",
                f"_gpg_name {self.fingerprint}",
                "--addsign",
                *paths,
            ],
            env=self.env,
        )

    def stop(self) -> None:
        # gpg starts a gpg-agent for the home; ask that agent (only ours) to exit.
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self.env, capture_output=True, check=False)


def _stage(package: str, tree: str) -> None:
    """Copy a package's files (resolving symlinks) and units into *tree*."""
    files, _description = CONTENTS[package]
    for source, target in files:
        destination = os.path.join(tree, target)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copy2(os.path.realpath(source), destination)
        os.chmod(destination, 0o755)
    for target, text in UNITS.get(package, {}).items():
        destination = os.path.join(tree, target)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        with open(destination, "w", encoding="utf-8") as handle:
            handle.write(textwrap.dedent(text))


def _deb_version(package: str, version: str) -> str:
    """Docker's naming: ``5:20.10.24-1~debian.12~bookworm`` (containerd.io has no epoch)."""
    epoch = "5:" if package.startswith("docker") else ""
    return f"{epoch}{version}-1~debian.12~{DEB_SUITE}"


def _build_deb(package: str, version: str, work: str, pool: str) -> str:
    tree = os.path.join(work, f"deb-{package}")
    _stage(package, tree)
    os.makedirs(os.path.join(tree, "DEBIAN"))
    control = [
        f"Package: {package}",
        f"Version: {_deb_version(package, version)}",
        f"Architecture: {DEB_ARCH}",
        "Maintainer: Berth test fixtures <docker-ce-test@berth.invalid>",
        f"Depends: {DEB_DEPENDS[package]}",
        *([f"Conflicts: {DEB_CONFLICTS[package]}"] if DEB_CONFLICTS[package] else []),
        "Section: admin",
        "Priority: optional",
        f"Description: {CONTENTS[package][1]}",
    ]
    with open(os.path.join(tree, "DEBIAN", "control"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(control) + "\n")
    if package == "docker-ce":
        # The docker group owns the socket (docker.socket's SocketGroup).
        script = "#!/bin/sh\nset -e\ngetent group docker >/dev/null || groupadd --system docker\n"
        postinst = os.path.join(tree, "DEBIAN", "postinst")
        with open(postinst, "w", encoding="utf-8") as handle:
            handle.write(script)
        os.chmod(postinst, 0o755)
    target = os.path.join(pool, f"{package}_{_deb_version(package, version).replace(':', '%3a')}_{DEB_ARCH}.deb")
    _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", tree, target])
    return target


def _apt_index(debian_root: str, debs: List[str], signer: _Signer) -> None:
    """Packages(.gz), Release, InRelease and Release.gpg for one suite and component."""
    stanzas = []
    for deb in debs:
        control = _run(["dpkg-deb", "--field", deb]).rstrip("\n")
        with open(deb, "rb") as handle:
            data = handle.read()
        relative = os.path.relpath(deb, debian_root)
        stanzas.append(
            f"{control}\nFilename: {relative}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data, usedforsecurity=False).hexdigest()}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    dists = os.path.join(debian_root, "dists", DEB_SUITE)
    binary = os.path.join(dists, COMPONENT, f"binary-{DEB_ARCH}")
    os.makedirs(binary)
    packages = "\n".join(stanzas).encode()
    with open(os.path.join(binary, "Packages"), "wb") as handle:
        handle.write(packages)
    with open(os.path.join(binary, "Packages.gz"), "wb") as handle:
        handle.write(gzip.compress(packages, mtime=0))
    lines = [
        "Origin: Berth test",
        "Label: docker-ce (berth test)",
        f"Suite: {DEB_SUITE}",
        f"Codename: {DEB_SUITE}",
        f"Architectures: {DEB_ARCH}",
        f"Components: {COMPONENT}",
        "Date: Thu, 01 Jan 2026 00:00:00 UTC",
    ]
    for field, algorithm in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        lines.append(f"{field}:")
        for name in ("Packages", "Packages.gz"):
            with open(os.path.join(binary, name), "rb") as handle:
                data = handle.read()
            digest = hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()
            lines.append(f" {digest} {len(data)} {COMPONENT}/binary-{DEB_ARCH}/{name}")
    release = os.path.join(dists, "Release")
    with open(release, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    signer.sign(release, os.path.join(dists, "InRelease"), clear=True)
    signer.sign(release, os.path.join(dists, "Release.gpg"), clear=False)


def _build_rpm(package: str, version: str, work: str) -> str:
    topdir = os.path.join(work, "rpmbuild")
    staged = os.path.join(work, f"rpm-{package}")
    _stage(package, staged)
    paths = sorted(
        "/" + os.path.relpath(os.path.join(directory, name), staged)
        for directory, _dirs, names in os.walk(staged)
        for name in names
    )
    requires = "".join(f"Requires: {name}\n" for name in RPM_REQUIRES[package])
    # The docker group owns the socket. A Lua scriptlet: a shell one would make the
    # package require /bin/sh, which no package provides in an empty rpm database.
    post = (
        '%post -p <lua>\npcall(rpm.execute, "groupadd", "--system", "--force", "docker")\n'
        if package == "docker-ce"
        else ""
    )
    spec = os.path.join(work, f"{package}.spec")
    with open(spec, "w", encoding="utf-8") as handle:
        handle.write(
            f"Name: {package}\n"
            f"Version: {version}\n"
            "Release: 1.el\n"
            f"Epoch: {3 if package.startswith('docker') else 0}\n"
            f"Summary: {CONTENTS[package][1]}\n"
            "License: Apache-2.0\n"
            f"BuildArch: {RPM_ARCH}\n"
            # Debian's binaries link against Debian's libraries: no automatic requirements.
            "AutoReqProv: no\n"
            f"{requires}"
            f"%description\n{CONTENTS[package][1]}\n"
            f"%install\ncp -a {staged}/. %{{buildroot}}/\n"
            f"{post}"
            "%files\n" + "\n".join(paths) + "\n"
        )
    _rpmbuild(spec, topdir, RPM_ARCH)
    (built,) = glob.glob(os.path.join(topdir, "RPMS", RPM_ARCH, f"{package}-{version}-*.rpm"))
    return built


def _rpmbuild(spec: str, topdir: str, arch: str) -> None:
    _run(
        [
            "rpmbuild",
            "-bb",
            "--define",
            f"_topdir {topdir}",
            "--define",
            "debug_package %{nil}",
            "--define",
            "__os_install_post %{nil}",
            "--define",
            "_build_id_links none",
            "--define",
            "_binary_payload w1.gzdio",
            "--target",
            arch,
            spec,
        ]
    )


def _build_standin_rpm(name: str, summary: str, work: str) -> str:
    """An empty noarch package that stands in for one of the EL distribution's own."""
    topdir = os.path.join(work, "rpmbuild")
    spec = os.path.join(work, f"{name}.spec")
    with open(spec, "w", encoding="utf-8") as handle:
        handle.write(
            f"Name: {name}\nVersion: 4.3.0\nRelease: 1.el\nSummary: {summary}\nLicense: GPL-2.0-or-later\n"
            f"BuildArch: noarch\n%description\n{summary}\n%files\n"
        )
    _rpmbuild(spec, topdir, "noarch")
    (built,) = glob.glob(os.path.join(topdir, "RPMS", "noarch", f"{name}-*.rpm"))
    return built


def _signed_yum_repo(directory: str, rpms: List[str], signer: _Signer) -> None:
    """*directory*/Packages with the signed RPMs, and its signed repodata."""
    os.makedirs(os.path.join(directory, "Packages"))
    for rpm in rpms:
        shutil.copy2(rpm, os.path.join(directory, "Packages"))
    signer.sign_rpms(sorted(glob.glob(os.path.join(directory, "Packages", "*.rpm"))))
    _run(["createrepo_c", "--quiet", directory])
    repomd = os.path.join(directory, "repodata", "repomd.xml")
    signer.sign(repomd, repomd + ".asc", clear=False)


def _yum_repos(root: str, rpms: List[str], signer: _Signer) -> None:
    """One signed package set, indexed once, published for every EL tree and release."""
    first = os.path.join(root, "linux", EL_TREES[0], EL_RELEASES[0], RPM_ARCH, COMPONENT)
    _signed_yum_repo(first, rpms, signer)
    for tree in EL_TREES:
        for release in EL_RELEASES:
            target = os.path.join(root, "linux", tree, release, RPM_ARCH, COMPONENT)
            if target != first:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(os.path.relpath(first, os.path.dirname(target)), target)


def _build(work: str) -> Dict[str, object]:
    versions = debian_versions()
    version = upstream_version(versions["docker.io"])
    root = os.path.join(work, "www")
    scratch = tempfile.mkdtemp(prefix="build-", dir=work)
    # gpg-agent's socket lives in the GnuPG home: keep its path short.
    signer = _Signer(tempfile.mkdtemp(prefix="bg-", dir="/tmp"))
    try:
        debian_root = os.path.join(root, "linux", "debian")
        pool = os.path.join(debian_root, "pool", COMPONENT)
        os.makedirs(pool)
        debs = [_build_deb(package, _package_version(package, versions), scratch, pool) for package in CONTENTS]
        _apt_index(debian_root, debs, signer)
        rpms = [_build_rpm(package, _package_version(package, versions), scratch) for package in CONTENTS]
        _yum_repos(root, rpms, signer)
        standin = _build_standin_rpm("dnf-plugins-core", STANDIN_SUMMARY, scratch)
        _signed_yum_repo(os.path.join(root, BASEOS_DIR), [standin], signer)
        for tree in ("debian", *EL_TREES):
            os.makedirs(os.path.join(root, "linux", tree), exist_ok=True)
            signer.export(os.path.join(root, "linux", tree, "gpg"))
        fingerprint = signer.fingerprint
    finally:
        signer.stop()
        shutil.rmtree(signer.home, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return {"fingerprint": fingerprint, "version": version, "debian_versions": versions}


# command -> the Debian package that has it (scripts/apt-packages.txt lists them)
TOOLS = {
    "dpkg-deb": "dpkg",
    "gpg": "gnupg",
    "rpmbuild": "rpm",
    "rpmsign": "rpm",
    "createrepo_c": "createrepo-c",
    "dockerd": "docker.io",
}


def require_tools() -> None:
    """Fail with the fix when a tool the build needs is missing."""
    missing = {tool: package for tool, package in TOOLS.items() if shutil.which(tool) is None}
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise RuntimeError(f"missing {', '.join(missing)}: run `make setup` (apt-get install {packages})")


def build() -> EngineRepos:
    """The cached repository tree (built on first use)."""
    require_tools()
    key = recipe_key(source_of(__file__), repr(sorted(debian_versions().items())))
    entry = cached("engine-repos", key, _build)
    facts = build_info(entry)
    root = os.path.join(entry, "www")
    return EngineRepos(
        root=root,
        fingerprint=str(facts["fingerprint"]),
        public_key=os.path.join(root, "linux", "debian", "gpg"),
        version=str(facts["version"]),
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(root: str) -> Iterator[str]:
    """Serve *root* over HTTP on 127.0.0.1 (a free port); yield the base URL."""

    def handler(*args: object, **kwargs: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=root, **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
