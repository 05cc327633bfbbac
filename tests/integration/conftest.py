"""Session fixtures of the integration suite: real registries, a token server, real images.

Everything here is real: ``docker-registry`` processes on free loopback
ports, a token server speaking Docker Hub's flow, images built offline
(busybox in a fraction of a second, Debian/nginx/systemd once per recipe,
then from /var/tmp/berth-fixtures).  Each session gets its own ports and
temporary directories, so two sessions can run at the same time; all of it
is stopped and removed when the session ends.

The suite runs as root; a missing prerequisite fails with the command that
installs it -- nothing is skipped silently.
"""

import os
import shutil
import tempfile
import uuid
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from support import images, pusher
from support.berth_env import BerthEnv
from support.pki import CertificateAuthority
from support.podman import Podman
from support.registry import Registry
from support.tokenserver import TokenServer

REQUIRED_TOOLS = {
    "docker-registry": "docker-registry",
    "htpasswd": "apache2-utils",
    "openssl": "openssl",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "debootstrap": "debootstrap",
    "unshare": "util-linux",
    "chroot": "coreutils",
    "podman": "podman",
    "runc": "runc",
}


def require_tools(*tools: str) -> None:
    """Fail (never skip) when a command is missing, naming the Debian package that has it."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        packages = " ".join(sorted({REQUIRED_TOOLS.get(t, t) for t in missing}))
        pytest.fail(f"missing {', '.join(missing)}: run `make setup` (apt-get install {packages})", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def require_root() -> None:
    """The integration suite needs root (namespaces, mounts, cgroups, debootstrap)."""
    if os.geteuid() != 0:
        pytest.fail(
            "the integration tests run as root: sudo .venv/bin/python -m pytest tests/integration", pytrace=False
        )


@pytest.fixture(scope="session")
def umoci() -> str:
    """Path of ``umoci`` (an independent unpacker to cross-check layers against)."""
    require_tools("umoci")
    return str(shutil.which("umoci"))


@pytest.fixture(scope="session")
def skopeo() -> str:
    """Path of ``skopeo`` (an independent registry client)."""
    require_tools("skopeo")
    return str(shutil.which("skopeo"))


@pytest.fixture(scope="session")
def fixture_dir() -> Iterator[str]:
    """A private directory for this session's registries and CA, removed at the end."""
    path = tempfile.mkdtemp(prefix="berth-it-", dir="/var/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def test_ca(fixture_dir: str) -> CertificateAuthority:
    """One throw-away CA for every TLS endpoint of the session (``ca.cert``, ``ca.ca_dir``)."""
    require_tools("openssl")
    return CertificateAuthority(os.path.join(fixture_dir, "ca"))


def _registry(variant: str, fixture_dir: str, **kwargs: object) -> Iterator[Registry]:
    require_tools("docker-registry", "htpasswd", "openssl")
    state = tempfile.mkdtemp(prefix=f"registry-{variant}-", dir=fixture_dir)
    reg = Registry(variant, state_dir=state, **kwargs)  # type: ignore[arg-type]
    try:
        yield reg.start()
    finally:
        reg.close()


@pytest.fixture(scope="session")
def registry(fixture_dir: str) -> Iterator[Registry]:
    """Plain HTTP, no authentication."""
    yield from _registry("plain", fixture_dir)


@pytest.fixture(scope="session")
def registry_auth(fixture_dir: str) -> Iterator[Registry]:
    """Plain HTTP with htpasswd (bcrypt) Basic authentication: ``.credentials``."""
    yield from _registry("auth", fixture_dir)


@pytest.fixture(scope="session")
def registry_tls(fixture_dir: str, test_ca: CertificateAuthority) -> Iterator[Registry]:
    """HTTPS with a certificate from ``test_ca`` (``.ca_file``, ``.ca_dir``), no authentication."""
    yield from _registry("tls", fixture_dir, ca=test_ca)


@pytest.fixture(scope="session")
def registry_tls_auth(fixture_dir: str, test_ca: CertificateAuthority) -> Iterator[Registry]:
    """HTTPS and htpasswd Basic authentication."""
    yield from _registry("tls-auth", fixture_dir, ca=test_ca)


@pytest.fixture(scope="module")
def token_server(fixture_dir: str, test_ca: CertificateAuthority) -> Iterator[TokenServer]:
    """Docker Hub's token flow: ``library/*`` and ``public/*`` pull anonymously, ``.username`` may push.

    Per module, not per session: it serves from threads of this process, and
    the isolation tests start containers in-process, which needs a
    single-threaded process (see ``support.isolation.Sandbox.run``).
    """
    server = TokenServer(ca=test_ca, state_dir=tempfile.mkdtemp(prefix="tokenserver-", dir=fixture_dir))
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="module")
def registry_token(fixture_dir: str, token_server: TokenServer) -> Iterator[Registry]:
    """Plain HTTP registry that wants bearer tokens from ``token_server``."""
    yield from _registry("token", fixture_dir, token_server=token_server)


REGISTRY_FIXTURES = ("registry", "registry_auth", "registry_tls", "registry_tls_auth", "registry_token")


@pytest.fixture(params=REGISTRY_FIXTURES)
def any_registry(request: pytest.FixtureRequest) -> Registry:
    """Each registry variant in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def make_registry(fixture_dir: str, test_ca: CertificateAuthority) -> Iterator[Callable[..., Registry]]:
    """A factory of private registries (stop them, restart them, break them); all closed after the test."""
    made: List[Registry] = []

    def make(variant: str = "plain", **kwargs: object) -> Registry:
        require_tools("docker-registry", "htpasswd", "openssl")
        kwargs.setdefault("ca", test_ca)
        state = tempfile.mkdtemp(prefix=f"registry-{variant}-", dir=fixture_dir)
        reg = Registry(variant, state_dir=state, **kwargs)  # type: ignore[arg-type]
        made.append(reg)
        return reg.start()

    yield make
    for reg in reversed(made):
        reg.close()


@pytest.fixture
def unique_repo() -> str:
    """A repository name no other test uses: ``berth-test/<random>``."""
    return f"berth-test/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def podman() -> Iterator[Podman]:
    """podman with a private store and configuration (support/podman.py), removed after the test."""
    require_tools("podman", "runc")
    instance = Podman(tempfile.mkdtemp(prefix="berth-podman-", dir="/var/tmp"))
    yield instance
    instance.close()


# -- images ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def busybox_layout() -> images.FixtureImages:
    """The busybox layout (tags latest, zstd, uncompressed, multi); see support/images.py."""
    return images.busybox_images()


@pytest.fixture(scope="session")
def debian_layout() -> images.FixtureImages:
    """Debian bookworm minbase (cached; ~50 s cold)."""
    _require_debian_tools()
    return images.debian_images()


@pytest.fixture(scope="session")
def nginx_layout() -> images.FixtureImages:
    """Debian + nginx-light, configured like the official nginx image (cached; ~80 s cold)."""
    _require_debian_tools()
    return images.nginx_images()


@pytest.fixture(scope="session")
def systemd_layout() -> images.FixtureImages:
    """Debian + systemd + systemd-sysv, Cmd /sbin/init (cached)."""
    _require_debian_tools()
    return images.systemd_images()


def _require_debian_tools() -> None:
    require_tools("debootstrap", "unshare", "chroot")


PushKey = Tuple[str, str, str, Optional[str], str, str]


@pytest.fixture(scope="session")
def push_image() -> Callable[..., pusher.PushResult]:
    """``push_image(registry, fixture_images, tag="latest", repo=None, fmt="oci", push_tag=None)``.

    Pushes a tag of a cached layout once per (registry, repo, tag, format) and
    session; later calls return the first result.  ``repo`` defaults to
    ``library/<image name>``, ``push_tag`` to *tag*.
    """
    done: Dict[PushKey, pusher.PushResult] = {}

    def push(
        registry: Registry,
        fixture_images: images.FixtureImages,
        *,
        tag: str = "latest",
        repo: Optional[str] = None,
        fmt: str = "oci",
        push_tag: Optional[str] = None,
    ) -> pusher.PushResult:
        repository = repo or f"library/{fixture_images.name}"
        key = (registry.state_dir, fixture_images.path, tag, repository, push_tag or tag, fmt)
        if key not in done:
            # A client per push: a kept-alive connection would keep a server thread (token server) alive.
            with registry.client() as client:
                done[key] = pusher.push(client, repository, fixture_images.get(tag), push_tag or tag, fmt)
        return done[key]

    return push


@pytest.fixture(scope="session")
def push_busybox(
    push_image: Callable[..., pusher.PushResult], busybox_layout: images.FixtureImages
) -> Callable[..., pusher.PushResult]:
    """``push_busybox(registry, repo="library/busybox", fmt="oci", tag="latest")`` (tag ``multi`` = index)."""

    def push(
        registry: Registry, repo: str = "library/busybox", fmt: str = "oci", tag: str = "latest"
    ) -> pusher.PushResult:
        return push_image(registry, busybox_layout, tag=tag, repo=repo, fmt=fmt)

    return push


# -- a Berth host with a docker.io mirror (the runtime, modules and CLI tests) ---------------
@pytest.fixture(scope="session")
def mirror(registry: Registry, push_image: Callable[..., pusher.PushResult], busybox_layout, nginx_layout) -> Registry:
    """The plain test registry holding library/busybox and library/nginx, used as a docker.io mirror."""
    push_image(registry, busybox_layout)
    push_image(registry, nginx_layout)
    return registry


@pytest.fixture(scope="session")
def host(mirror: Registry) -> Iterator[BerthEnv]:
    """One isolated Berth host for the session (own data root, bridge, subnet), busybox and nginx pulled."""
    env = BerthEnv(mirrors=[mirror.url])
    env.berth("pull", "busybox")
    env.berth("pull", "nginx")
    yield env
    assert env.destroy() == []


@pytest.fixture
def container_names(host: BerthEnv) -> Iterator[List[str]]:
    """Names of the containers a test makes on ``host``: each is removed (``rm -f``) afterwards."""
    names: List[str] = []
    yield names
    for name in names:
        host.berth("rm", "-f", name, check=False)


@pytest.fixture
def fresh_host(mirror: Registry) -> Iterator[BerthEnv]:
    """An isolated Berth host with an empty store, for one test."""
    env = BerthEnv(mirrors=[mirror.url])
    yield env
    assert env.destroy() == []
