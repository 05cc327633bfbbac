"""RegistryClient against real ``docker-registry`` processes (distribution 2.8) and a real token server.

Every manifest kind, platform choice, each authentication and TLS variant,
mirror fallback (one mirror down, one without the image, a real pull-through
mirror), tag moves seen by ``manifest_digest``, faults injected in front of a
real registry, and the push side.
"""

import hashlib
import os
from typing import Callable, Iterator

import pytest
from support import images, pusher
from support.faults import FaultProxy
from support.registry import Registry
from support.tokenserver import TokenServer

from ansible_collections.berth.containers.plugins.module_utils.runtime import manifest as m
from ansible_collections.berth.containers.plugins.module_utils.runtime import reference
from ansible_collections.berth.containers.plugins.module_utils.runtime.auth import Credentials
from ansible_collections.berth.containers.plugins.module_utils.runtime.config import DaemonConfig
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import (
    AuthenticationError,
    IntegrityError,
    ManifestError,
    NotFound,
    RegistryError,
)
from ansible_collections.berth.containers.plugins.module_utils.runtime.registry import RegistryClient

pytestmark = pytest.mark.registry

PushBusybox = Callable[..., pusher.PushResult]


def client(**options) -> RegistryClient:
    options.setdefault("certs_dirs", ())
    options.setdefault("retry_backoff", 0.01)
    return RegistryClient(options.pop("config", None), options.pop("credentials", None), **options)


def ref(registry: Registry, repository: str = "library/busybox", tag: str = "latest") -> reference.Reference:
    return reference.parse(registry.reference(repository, tag))


def pull_everything(c: RegistryClient, resolved, directory) -> m.ImageConfig:
    """Config and every layer, each checked against the digest that names it."""
    config = c.fetch_config(resolved)
    for number, layer in enumerate(resolved.layers):
        dest = os.path.join(str(directory), f"layer{number}")
        assert c.fetch_blob(resolved, layer, dest) == layer.digest
        with open(dest, "rb") as handle:
            assert "sha256:" + hashlib.sha256(handle.read()).hexdigest() == layer.digest
    return config


KINDS = {
    "oci": (m.MEDIA_TYPE_OCI_MANIFEST, m.MEDIA_TYPE_OCI_INDEX),
    "docker": (m.MEDIA_TYPE_DOCKER_MANIFEST, m.MEDIA_TYPE_DOCKER_MANIFEST_LIST),
}


@pytest.mark.parametrize("fmt", sorted(KINDS))
def test_every_manifest_kind_resolves_and_pulls(
    registry: Registry, push_busybox: PushBusybox, tmp_path, fmt: str
) -> None:
    single, multi = KINDS[fmt]
    repo = f"kinds/{fmt}"
    pushed = push_busybox(registry, repo=repo, fmt=fmt)
    pushed_multi = push_busybox(registry, repo=repo, fmt=fmt, tag="multi")
    with client() as c:
        resolved = c.resolve(ref(registry, repo))
        assert (resolved.media_type, resolved.digest, resolved.index) == (single, pushed.digest, None)
        assert resolved.endpoint.url == registry.url
        config = pull_everything(c, resolved, tmp_path)
        assert list(config.diff_ids) == pushed.diff_ids
        assert config.digest == pushed.image_id
        through_index = c.resolve(ref(registry, repo, "multi"))
        host_child = pushed_multi.child(str(m.host_platform()))
        assert (through_index.index.media_type, through_index.index_digest) == (multi, pushed_multi.digest)
        assert (through_index.media_type, through_index.digest) == (single, host_child.digest)
        assert through_index.repo_digest == pushed_multi.digest
        assert list(c.fetch_config(through_index).diff_ids) == host_child.diff_ids


def test_reference_by_digest_is_fetched_and_verified(registry: Registry, push_busybox: PushBusybox) -> None:
    pushed = push_busybox(registry, repo="bydigest/busybox")
    with client() as c:
        resolved = c.resolve(reference.parse(f"{registry.host}/bydigest/busybox:ignored@{pushed.digest}"))
    assert resolved.digest == pushed.digest


def test_multi_platform_choice_host_explicit_and_no_match(registry: Registry, push_busybox: PushBusybox) -> None:
    pushed = push_busybox(registry, repo="multi/busybox", tag="multi")
    target = ref(registry, "multi/busybox", "multi")
    with client() as c:
        assert c.resolve(target).digest == pushed.child(str(m.host_platform())).digest
        for platform in images.MULTI_PLATFORMS:
            chosen = c.resolve(target, m.parse_platform(platform))
            assert chosen.digest == pushed.child(platform).digest
            assert str(chosen.platform) == platform
        assert c.manifest_digest(target, m.parse_platform("linux/arm/v7")) == pushed.child("linux/arm/v7").digest
        with pytest.raises(ManifestError) as caught:
            c.resolve(target, m.parse_platform("linux/s390x"))
    assert "has no manifest for platform linux/s390x; available platforms: " in str(caught.value)
    for platform in images.MULTI_PLATFORMS:
        assert platform in str(caught.value)


def test_missing_image_is_not_found(registry: Registry) -> None:
    with client() as c, pytest.raises(NotFound) as caught:
        c.resolve(ref(registry, "nobody/home", "v9"))
    assert str(caught.value) == f"image {registry.host}/nobody/home:v9 not found in registry {registry.host}"


# --- authentication ----------------------------------------------------------------------------


def test_basic_auth_good_wrong_and_missing(registry_auth: Registry, push_busybox: PushBusybox, tmp_path) -> None:
    push_busybox(registry_auth)
    user, password = registry_auth.credentials
    with client(credentials=Credentials(user, password)) as c:
        pull_everything(c, c.resolve(ref(registry_auth)), tmp_path)
    with client(credentials=Credentials(user, password + "x")) as c, pytest.raises(AuthenticationError) as caught:
        c.resolve(ref(registry_auth))
    assert str(caught.value) == f"registry {registry_auth.host} refused the credentials for user {user}"
    assert password not in str(caught.value)
    with client() as c, pytest.raises(AuthenticationError) as caught:
        c.resolve(ref(registry_auth))
    assert str(caught.value) == (
        f"registry {registry_auth.host} requires authentication: give username/password or run `berth login`"
    )


def test_bearer_token_anonymous_scope_and_reuse(
    registry_token: Registry, token_server: TokenServer, push_busybox: PushBusybox, tmp_path
) -> None:
    push_busybox(registry_token)
    token_server.clear_requests()
    with client() as c:
        resolved = c.resolve(ref(registry_token))
        pull_everything(c, resolved, tmp_path)
        assert c.manifest_digest(ref(registry_token)) == resolved.digest
    requests = token_server.requests
    assert len(requests) == 1, "one token serves the manifest, the config, every layer and the HEAD"
    assert requests[0].scopes == ["repository:library/busybox:pull"]
    assert requests[0].service == token_server.service
    assert requests[0].user is None


def test_bearer_token_with_credentials_and_wrong_password(
    registry_token: Registry, token_server: TokenServer, push_busybox: PushBusybox
) -> None:
    push_busybox(registry_token, repo="private/busybox")
    target = ref(registry_token, "private/busybox")
    token_server.clear_requests()
    with client(credentials=Credentials(token_server.username, token_server.password)) as c:
        assert c.resolve(target).digest
    assert token_server.requests[0].user == token_server.username
    with client(credentials=Credentials(token_server.username, "wrong")) as c, pytest.raises(AuthenticationError) as e:
        c.resolve(target)
    assert str(e.value) == f"registry {registry_token.host} refused the credentials for user {token_server.username}"
    with client() as c, pytest.raises(AuthenticationError, match="requires authentication"):
        c.resolve(target)


def test_tls_with_the_ca_without_it_and_from_certs_d(
    registry_tls_auth: Registry, push_busybox: PushBusybox, tmp_path
) -> None:
    push_busybox(registry_tls_auth)
    credentials = Credentials(*registry_tls_auth.credentials)
    with client(credentials=credentials, ca_path=registry_tls_auth.ca_file) as c:
        resolved = c.resolve(ref(registry_tls_auth))
        assert resolved.endpoint.url == registry_tls_auth.url
        pull_everything(c, resolved, tmp_path)
    with client(credentials=credentials) as c, pytest.raises(RegistryError) as caught:
        c.resolve(ref(registry_tls_auth))
    assert f"the TLS certificate of {registry_tls_auth.host} is not trusted" in str(caught.value)
    assert caught.value.code == "CERTIFICATE"
    certs_d = tmp_path / "certs.d" / registry_tls_auth.host
    certs_d.mkdir(parents=True)
    with open(registry_tls_auth.ca_file, "rb") as handle:
        (certs_d / "ca.crt").write_bytes(handle.read())
    with client(credentials=credentials, certs_dirs=[str(tmp_path / "certs.d")]) as c:
        assert c.resolve(ref(registry_tls_auth)).digest == resolved.digest


def test_insecure_registries_over_http_and_unverified_tls(
    registry: Registry, registry_tls: Registry, push_busybox: PushBusybox
) -> None:
    push_busybox(registry)
    push_busybox(registry_tls)
    config = DaemonConfig(insecure_registries=(registry.host, registry_tls.host))
    with client(config=config) as c:
        plain = c.resolve(ref(registry))
        assert plain.endpoint.url == f"http://{registry.host}"
        tls = c.resolve(ref(registry_tls))
        assert (tls.endpoint.url, tls.endpoint.verify) == (f"https://{registry_tls.host}", False)
        assert c.fetch_config(tls).digest
    with client() as c:
        assert c.resolve(ref(registry)).endpoint.url == f"http://{registry.host}", "loopback may use plain HTTP"


# --- mirrors --------------------------------------------------------------------------------------


def test_mirror_down_then_mirror_without_image_then_origin(
    registry: Registry, make_registry: Callable[..., Registry], push_busybox: PushBusybox, tmp_path
) -> None:
    push_busybox(registry)
    down = make_registry()
    down.stop()
    empty = make_registry()
    config = DaemonConfig(registry_mirrors=(down.url, empty.url))
    with client(config=config, docker_hub_url=registry.url) as c:
        resolved = c.resolve(reference.parse("busybox"))
        assert resolved.endpoint.url == registry.url
        assert not resolved.endpoint.mirror
        pull_everything(c, resolved, tmp_path)


def test_pull_through_mirror_serves_the_whole_pull(
    registry: Registry, make_registry: Callable[..., Registry], push_busybox: PushBusybox, tmp_path
) -> None:
    pushed = push_busybox(registry)
    mirror = make_registry(mirror_of=registry)
    with FaultProxy(registry.url) as origin:
        config = DaemonConfig(registry_mirrors=(mirror.url,))
        with client(config=config, docker_hub_url=origin.url) as c:
            resolved = c.resolve(reference.parse("docker.io/library/busybox:latest"))
            assert (resolved.endpoint.url, resolved.endpoint.mirror) == (mirror.url, True)
            assert resolved.digest == pushed.digest
            pull_everything(c, resolved, tmp_path)
        assert origin.requests == [], "nothing was asked of the origin"


def test_errors_of_the_origin_are_reported(registry: Registry, make_registry: Callable[..., Registry]) -> None:
    empty = make_registry()
    config = DaemonConfig(registry_mirrors=(empty.url,))
    with client(config=config, docker_hub_url=registry.url) as c, pytest.raises(NotFound) as caught:
        c.resolve(reference.parse("library/never-pushed"))
    assert f"not found in registry {registry.host}" in str(caught.value)


# --- tag moves ------------------------------------------------------------------------------------


def test_manifest_digest_changes_when_the_tag_is_pushed_again(
    registry: Registry, push_image: Callable[..., pusher.PushResult], busybox_layout, unique_repo: str
) -> None:
    first = push_image(registry, busybox_layout, tag="latest", repo=unique_repo, push_tag="moving")
    target = ref(registry, unique_repo, "moving")
    with FaultProxy(registry.url) as proxy, client() as c:
        through_proxy = reference.parse(f"{proxy.host}/{unique_repo}:moving")
        assert c.manifest_digest(through_proxy) == first.digest
        assert proxy.count("GET", "/manifests/") == 0, "a HEAD was enough"
        second = push_image(registry, busybox_layout, tag="zstd", repo=unique_repo, push_tag="moving")
        assert second.digest != first.digest
        assert c.manifest_digest(target) == second.digest
        multi = push_image(registry, busybox_layout, tag="multi", repo=unique_repo, push_tag="moving")
        assert c.manifest_digest(target) == multi.child(str(m.host_platform())).digest


# --- faults in front of the real registry ---------------------------------------------------------


@pytest.fixture
def proxied(registry: Registry, push_busybox: PushBusybox) -> Iterator[FaultProxy]:
    push_busybox(registry)
    with FaultProxy(registry.url) as proxy:
        yield proxy


def largest_layer(c: RegistryClient, proxy: FaultProxy):
    resolved = c.resolve(reference.parse(f"{proxy.host}/library/busybox:latest"))
    return resolved, max(resolved.layers, key=lambda layer: layer.size)


def test_reset_mid_blob_resumes_with_range_on_the_real_registry(proxied: FaultProxy, tmp_path) -> None:
    proxied.reset_after(r"/blobs/sha256:", 100_000, times=1)
    with client() as c:
        resolved, layer = largest_layer(c, proxied)
        c.fetch_blob(resolved, layer, str(tmp_path / "blob"))
    ranges = [r.headers.get("Range") for r in proxied.requests if "/blobs/" in r.path and r.method == "GET"]
    assert ranges == [None, "bytes=100000-"]
    assert (tmp_path / "blob").stat().st_size == layer.size


def test_wrong_bytes_from_the_real_registry_are_refused(proxied: FaultProxy, tmp_path) -> None:
    proxied.wrong_body(r"/blobs/sha256:")
    with client() as c:
        resolved, layer = largest_layer(c, proxied)
        with pytest.raises(IntegrityError, match="does not match its digest"):
            c.fetch_blob(resolved, layer, str(tmp_path / "blob"))
    assert os.listdir(tmp_path) == []


def test_redirected_blob_never_carries_authorization(
    registry_auth: Registry, push_busybox: PushBusybox, tmp_path
) -> None:
    push_busybox(registry_auth)
    with FaultProxy(registry_auth.url) as proxy:
        proxy.redirect(r"/blobs/sha256:")
        with client(credentials=Credentials(*registry_auth.credentials)) as c:
            resolved, layer = largest_layer(c, proxy)
            c.fetch_blob(resolved, layer, str(tmp_path / "blob"))
        sent = [r for r in proxy.requests if r.method == "GET" and "/blobs/" in r.path]
        assert sent[0].headers["Authorization"].startswith("Basic ")
        assert proxy.redirected, "the blob came from the redirect target"
        assert all("Authorization" not in r.headers for r in proxy.redirected)


# --- push -------------------------------------------------------------------------------------------


def test_push_with_token_auth_then_pull_back(
    registry_token: Registry, token_server: TokenServer, busybox_layout, unique_repo: str, tmp_path
) -> None:
    image = busybox_layout.image("latest")
    target = reference.parse(registry_token.reference(unique_repo, "pushed"))
    mounted = reference.parse(registry_token.reference(unique_repo + "-copy", "pushed"))
    token_server.clear_requests()
    with client(credentials=Credentials(token_server.username, token_server.password)) as c:
        for number, layer in enumerate(image.layers):
            assert c.blob_exists(target, layer.digest) is False
            chunk = 100_000 if number == 0 else 32 * 1024 * 1024
            c.upload_blob(target, layer.digest, image.blob_path(layer.digest), chunk_size=chunk)
            assert c.blob_exists(target, layer.digest) is True
        config_path = tmp_path / "config.json"
        config_path.write_bytes(image.config_bytes)
        c.upload_blob(target, image.config_digest, str(config_path))
        body = image.manifest_bytes("oci")
        assert c.put_manifest(target, body, m.MEDIA_TYPE_OCI_MANIFEST) == "sha256:" + hashlib.sha256(body).hexdigest()
        for layer in image.layers:
            assert c.mount_blob(mounted, layer.digest, unique_repo) is True
        assert c.mount_blob(mounted, image.config_digest, unique_repo) is True
        c.put_manifest(mounted, body, m.MEDIA_TYPE_OCI_MANIFEST)
        resolved = c.resolve(mounted)
        assert pull_everything(c, resolved, tmp_path).digest == image.config_digest
    scopes = {scope for request in token_server.requests for scope in request.scopes}
    assert f"repository:{unique_repo}:pull,push" in scopes
    assert f"repository:{unique_repo}:pull" in scopes
