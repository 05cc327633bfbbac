"""The registry client's protocol logic against small real HTTP servers on loopback.

``support.fake_registry`` is an in-memory registry and ``support.faults`` a
proxy that breaks responses on purpose; both are real sockets, so requests,
urllib3, redirects, ranges and resets behave as on the wire.
"""

import json
import os
from typing import Iterator

import pytest
from support.fake_registry import OCI_INDEX, OCI_MANIFEST, FakeRegistry, sha256
from support.faults import FaultProxy

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

LAYER = os.urandom(300_000)
SMALL = b"small layer"
AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}


@pytest.fixture(autouse=True)
def host_is_amd64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m, "host_platform", lambda: m.Platform("linux", "amd64"))


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        registry.add_image("app", [LAYER, SMALL], tag="v1")
        yield registry


def client(**options) -> RegistryClient:
    options.setdefault("retry_backoff", 0.001)
    options.setdefault("certs_dirs", ())
    return RegistryClient(options.pop("config", None), options.pop("credentials", None), **options)


def ref(registry, path: str = "app:v1") -> reference.Reference:
    return reference.parse(f"{registry.host}/{path}")


# --- manifests -----------------------------------------------------------------------


def test_resolve_single_manifest_sends_all_accept_types(fake: FakeRegistry) -> None:
    with client() as c:
        resolved = c.resolve(ref(fake))
    image = fake.manifests[("app", "v1")][0]
    assert resolved.digest == sha256(image)
    assert resolved.repo_digest == resolved.digest
    assert resolved.index is None
    assert resolved.endpoint.url == f"http://{fake.host}"
    assert [layer.size for layer in resolved.layers] == [len(LAYER), len(SMALL)]
    accept = next(r for r in fake.requests if "/manifests/" in r.path).headers["Accept"]
    for media_type in (m.MEDIA_TYPE_DOCKER_MANIFEST, m.MEDIA_TYPE_DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX):
        assert media_type in accept


def test_index_is_followed_to_the_host_or_requested_platform(fake: FakeRegistry) -> None:
    amd = fake.add_image("multi", [SMALL], tag="", architecture="amd64")
    arm = fake.add_image("multi", [LAYER], tag="", architecture="arm64")
    index_digest = fake.add_index("multi", [(arm, ARM64), (amd, AMD64)], "latest")
    with client() as c:
        host = c.resolve(ref(fake, "multi"))
        explicit = c.resolve(ref(fake, "multi"), m.parse_platform("linux/arm64/v8"))
        with pytest.raises(ManifestError, match="no manifest for platform linux/s390x; available platforms: "):
            c.resolve(ref(fake, "multi"), m.parse_platform("linux/s390x"))
    assert (host.digest, host.index_digest, host.repo_digest) == (amd["digest"], index_digest, index_digest)
    assert host.platform == m.Platform("linux", "amd64")
    assert explicit.digest == arm["digest"]


def test_fetch_config_checks_layer_count_and_requested_platform(fake: FakeRegistry) -> None:
    with client() as c:
        resolved = c.resolve(ref(fake))
        config = c.fetch_config(resolved)
        assert len(config.diff_ids) == 2
        arm = c.resolve(ref(fake), m.parse_platform("linux/arm64"))
        with pytest.raises(ManifestError, match="is for platform linux/amd64, not the requested linux/arm64"):
            c.fetch_config(arm)


def test_manifest_by_digest_is_verified(fake: FakeRegistry) -> None:
    digest = fake.add_image("other", [SMALL])["digest"]
    fake.manifests[("app", digest)] = fake.manifests[("app", "v1")]
    with client() as c, pytest.raises(IntegrityError, match=f"expected {digest}"):
        c.resolve(ref(fake, f"app@{digest}"))


def test_announced_digest_that_does_not_match_is_refused(fake: FakeRegistry) -> None:
    body = fake.manifests[("app", "v1")][0]
    fake.script(
        "GET",
        "/manifests/v1",
        200,
        body=body,
        headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(b"else")},
    )
    with client() as c, pytest.raises(IntegrityError, match="does not match the Docker-Content-Digest"):
        c.resolve(ref(fake))


def test_content_type_other_than_media_type_is_refused(fake: FakeRegistry) -> None:
    body = fake.manifests[("app", "v1")][0]
    fake.script("GET", "/manifests/v1", 200, body=body, headers={"Content-Type": OCI_INDEX})
    with client() as c, pytest.raises(ManifestError, match="CVE-2021-41190"):
        c.resolve(ref(fake))


def test_oversized_manifest_is_refused_by_content_length(fake: FakeRegistry) -> None:
    fake.script("GET", "/manifests/v1", 200, body=b" " * (5 * 1024 * 1024), headers={"Content-Type": OCI_MANIFEST})
    with client() as c, pytest.raises(ManifestError, match="5242880 bytes, more than the 4194304 allowed"):
        c.resolve(ref(fake))


def chunked(data: bytes, size: int = 65536) -> bytes:
    """*data* in HTTP/1.1 chunked transfer coding (a body whose length is not announced)."""
    parts = [b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def test_oversized_manifest_without_length_is_refused_while_streaming(fake: FakeRegistry) -> None:
    headers = {"Content-Type": OCI_MANIFEST, "Transfer-Encoding": "chunked"}
    fake.script("GET", "/manifests/v1", 200, body=chunked(b" " * (5 * 1024 * 1024)), headers=headers)
    with client() as c, pytest.raises(ManifestError, match="more than the 4194304 bytes allowed"):
        c.resolve(ref(fake))


def test_oversized_token_answer_is_refused() -> None:
    with FakeRegistry(auth="bearer", anonymous_pull=True) as fake:
        fake.add_image("app", [SMALL], tag="v1")
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        fake.script(
            "GET", "/token", 200, body=chunked(b'{"token": "' + b"x" * (2 * 1024 * 1024) + b'"}'), headers=headers
        )
        with client() as c, pytest.raises(RegistryError, match="token server's answer is more than the 1048576"):
            c.resolve(ref(fake))


def test_missing_image_and_repository_are_not_found(fake: FakeRegistry) -> None:
    with client() as c:
        with pytest.raises(NotFound) as caught:
            c.resolve(ref(fake, "app:nope"))
        assert str(caught.value) == f"image {fake.host}/app:nope not found in registry {fake.host}"
        with pytest.raises(NotFound, match=r"image .*/ghost:latest not found"):
            c.manifest_digest(ref(fake, "ghost"))


def test_server_errors_on_manifests_are_retried_then_reported(fake: FakeRegistry) -> None:
    fake.script("GET", "/manifests/v1", 503, times=2)
    with client() as c:
        assert c.resolve(ref(fake)).digest == sha256(fake.manifests[("app", "v1")][0])
    assert fake.count("GET", "/manifests/v1") == 3
    fake.script("GET", "/manifests/v1", 500, times=None, body=b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}')
    with client(max_attempts=2) as c, pytest.raises(RegistryError, match=r"answered HTTP 500 .*UNKNOWN: boom"):
        c.resolve(ref(fake))


def test_manifest_digest_uses_head_and_follows_tag_moves(fake: FakeRegistry) -> None:
    with client() as c:
        first = c.manifest_digest(ref(fake))
        assert fake.count("GET", "/manifests/") == 0
        moved = fake.add_image("app", [SMALL], tag="v1")
        assert c.manifest_digest(ref(fake)) == moved["digest"] != first


def test_manifest_digest_of_an_index_is_the_platform_manifest(fake: FakeRegistry) -> None:
    amd = fake.add_image("multi", [SMALL], tag="", architecture="amd64")
    arm = fake.add_image("multi", [SMALL], tag="", architecture="arm64")
    fake.add_index("multi", [(amd, AMD64), (arm, ARM64)], "latest")
    with client() as c:
        assert c.manifest_digest(ref(fake, "multi")) == amd["digest"]
        assert c.manifest_digest(ref(fake, "multi"), m.parse_platform("linux/arm64")) == arm["digest"]


def test_manifest_digest_without_the_header_falls_back_to_get() -> None:
    with FakeRegistry(content_digest_header=False) as fake:
        image = fake.add_image("app", [SMALL], tag="v1")
        with client() as c:
            assert c.manifest_digest(ref(fake)) == image["digest"]
        assert fake.count("GET", "/manifests/v1") == 1


# --- authentication ----------------------------------------------------------------------


def test_basic_auth_good_wrong_and_missing_credentials() -> None:
    with FakeRegistry(auth="basic", users={"alice": "pw"}) as fake:
        fake.add_image("app", [SMALL], tag="v1")
        with client(credentials=Credentials("alice", "pw")) as c:
            resolved = c.resolve(ref(fake))
            c.fetch_config(resolved)
        with client(credentials=Credentials("alice", "wrong")) as c, pytest.raises(AuthenticationError) as caught:
            c.resolve(ref(fake))
        assert str(caught.value) == f"registry {fake.host} refused the credentials for user alice"
        assert "wrong" not in str(caught.value)
        with client() as c, pytest.raises(AuthenticationError, match="requires authentication: give username"):
            c.resolve(ref(fake))


def test_bearer_token_is_scoped_and_reused(tmp_path) -> None:
    with FakeRegistry(auth="bearer", users={"alice": "pw"}) as fake:
        fake.add_image("team/app", [LAYER, SMALL], tag="v1")
        with client(credentials=Credentials("alice", "pw")) as c:
            resolved = c.resolve(ref(fake, "team/app:v1"))
            c.fetch_config(resolved)
            for number, layer in enumerate(resolved.layers):
                c.fetch_blob(resolved, layer, str(tmp_path / f"layer{number}"))
        assert [grant.scopes for grant in fake.token_grants] == [["repository:team/app:pull"]]
        assert fake.token_grants[0].user == "alice"
        assert fake.token_grants[0].service == "fake"


def test_anonymous_bearer_pull_and_denied_private_repository() -> None:
    with FakeRegistry(auth="bearer", anonymous_pull=True) as fake:
        fake.add_image("app", [SMALL], tag="v1")
        with client() as c:
            assert c.resolve(ref(fake)).digest
        assert fake.token_grants[0].user is None
    with FakeRegistry(auth="bearer", anonymous_pull=False) as fake:
        fake.add_image("app", [SMALL], tag="v1")
        with client() as c, pytest.raises(AuthenticationError, match="requires authentication"):
            c.resolve(ref(fake))


def test_credentials_come_from_the_auth_file(tmp_path) -> None:
    import base64

    with FakeRegistry(auth="basic", users={"bob": "from-file"}) as fake:
        fake.add_image("app", [SMALL], tag="v1")
        path = tmp_path / "config.json"
        token = base64.b64encode(b"bob:from-file").decode()
        path.write_text(json.dumps({"auths": {fake.host: {"auth": token}}}))
        with client(auth_file=str(path)) as c:
            assert c.resolve(ref(fake)).digest


# --- blobs ------------------------------------------------------------------------------


def fetch(c: RegistryClient, registry, tmp_path, index: int = 0, progress=None):
    resolved = c.resolve(ref(registry))
    dest = tmp_path / "blob"
    c.fetch_blob(resolved, resolved.layers[index], str(dest), progress)
    return dest


def test_blob_is_streamed_verified_and_renamed(fake: FakeRegistry, tmp_path) -> None:
    seen = []
    with client() as c:
        dest = fetch(c, fake, tmp_path, progress=seen.append)
    assert dest.read_bytes() == LAYER
    assert not os.path.exists(str(dest) + ".partial")
    assert seen[-1] == len(LAYER)
    blob_request = next(r for r in fake.requests if "/blobs/sha256" in r.path and r.method == "GET")
    assert blob_request.headers["Accept-Encoding"] == "identity"


@pytest.fixture
def proxy(fake: FakeRegistry) -> Iterator[FaultProxy]:
    with FaultProxy(fake.url) as faults:
        yield faults


def test_reset_connection_is_resumed_with_range(proxy: FaultProxy, tmp_path) -> None:
    proxy.reset_after(r"/blobs/sha256", 100_000, times=1)
    with client() as c:
        dest = fetch(c, proxy, tmp_path)
    assert dest.read_bytes() == LAYER
    blob_gets = [r for r in proxy.requests if r.method == "GET" and "/blobs/sha256" in r.path]
    assert len(blob_gets) == 2
    assert "Range" not in blob_gets[0].headers
    assert blob_gets[1].headers["Range"] == "bytes=100000-"


def test_always_resetting_registry_fails_after_five_attempts(proxy: FaultProxy, tmp_path) -> None:
    proxy.reset_after(r"/blobs/sha256", 0, times=None)
    with client() as c, pytest.raises(RegistryError, match="failed after 5 attempts"):
        fetch(c, proxy, tmp_path)
    assert not (tmp_path / "blob").exists()
    assert proxy.count("GET", "/blobs/sha256") == 5


def test_200_to_a_range_request_restarts_from_zero(proxy: FaultProxy, tmp_path) -> None:
    proxy.reset_after(r"/blobs/sha256", 50_000, times=1)
    proxy.ignore_range(r"/blobs/sha256")
    with client() as c:
        dest = fetch(c, proxy, tmp_path)
    assert dest.read_bytes() == LAYER


def test_wrong_body_is_refused_and_nothing_is_left(proxy: FaultProxy, tmp_path) -> None:
    proxy.wrong_body(r"/blobs/sha256")
    with client() as c, pytest.raises(IntegrityError, match="does not match its digest"):
        fetch(c, proxy, tmp_path)
    assert os.listdir(tmp_path) == []


def test_blob_longer_than_its_size_is_aborted(proxy: FaultProxy, tmp_path) -> None:
    proxy.pad(r"/blobs/sha256", b"x" * 10)
    with client() as c, pytest.raises(IntegrityError, match="longer than the 300000 bytes"):
        fetch(c, proxy, tmp_path)
    assert os.listdir(tmp_path) == []


def test_config_longer_than_its_descriptor_is_refused(proxy: FaultProxy) -> None:
    with client() as c:
        resolved = c.resolve(ref(proxy))
        proxy.pad(r"/blobs/" + resolved.config.digest, b" " * 10)
        with pytest.raises(IntegrityError, match=f"more than the {resolved.config.size} allowed"):
            c.fetch_config(resolved)


def test_truncated_blob_is_resumed_or_refused(proxy: FaultProxy, tmp_path) -> None:
    proxy.truncate(r"/blobs/sha256", 120_000, times=1)
    with client() as c:
        assert fetch(c, proxy, tmp_path).read_bytes() == LAYER
    (tmp_path / "blob").unlink()
    proxy.clear()
    proxy.truncate(r"/blobs/sha256", 10_000)
    with client() as c, pytest.raises(RegistryError, match="sent 50000 of 300000 bytes"):
        fetch(c, proxy, tmp_path)
    assert not (tmp_path / "blob").exists()


def test_server_errors_are_retried(proxy: FaultProxy, tmp_path) -> None:
    proxy.fail(r"/blobs/sha256", 503, times=2)
    with client() as c:
        assert fetch(c, proxy, tmp_path).read_bytes() == LAYER
    assert proxy.count("GET", "/blobs/sha256") == 3


def test_slow_answer_times_out_and_is_retried(proxy: FaultProxy, tmp_path) -> None:
    proxy.delay(r"/blobs/sha256", 1.0, times=1)
    with client(timeout=(2.0, 0.3)) as c:
        assert fetch(c, proxy, tmp_path).read_bytes() == LAYER
    assert proxy.count("GET", "/blobs/sha256") == 2


def test_existing_partial_is_resumed(fake: FakeRegistry, tmp_path) -> None:
    (tmp_path / "blob.partial").write_bytes(LAYER[:200_000])
    with client() as c:
        assert fetch(c, fake, tmp_path).read_bytes() == LAYER
    blob_get = next(r for r in fake.requests if r.method == "GET" and "/blobs/sha256" in r.path)
    assert blob_get.headers["Range"] == "bytes=200000-"


def test_mismatch_after_resume_is_retried_once_from_zero(fake: FakeRegistry, tmp_path) -> None:
    (tmp_path / "blob.partial").write_bytes(b"\0" * 200_000)
    with client() as c:
        assert fetch(c, fake, tmp_path).read_bytes() == LAYER
    ranges = [r.headers.get("Range") for r in fake.requests if r.method == "GET" and "/blobs/sha256" in r.path]
    assert ranges == ["bytes=200000-", None]


def test_redirect_to_another_host_drops_authorization(tmp_path) -> None:
    with FakeRegistry(auth="basic", users={"alice": "pw"}) as fake:
        fake.add_image("app", [LAYER], tag="v1")
        with FaultProxy(fake.url) as proxy:
            proxy.redirect(r"/blobs/sha256")
            with client(credentials=Credentials("alice", "pw")) as c:
                assert fetch(c, proxy, tmp_path).read_bytes() == LAYER
            original = next(r for r in proxy.requests if r.method == "GET" and "/blobs/sha256" in r.path)
            assert original.headers["Authorization"].startswith("Basic ")
            assert len(proxy.redirected) == 1
            assert "Authorization" not in proxy.redirected[0].headers
            assert proxy.redirected[0].headers["Host"].startswith("localhost:")


def test_descriptor_urls_are_never_fetched(tmp_path) -> None:
    with FakeRegistry() as fake, FakeRegistry() as elsewhere:
        image = fake.add_image("app", [SMALL], tag="v1")
        document = json.loads(image["manifest"])
        document["layers"][0]["urls"] = [f"{elsewhere.url}/steal"]
        fake.add_manifest("app", json.dumps(document).encode(), OCI_MANIFEST, ("v1",))
        with client() as c:
            resolved = c.resolve(ref(fake))
            assert resolved.layers[0].urls
            c.fetch_blob(resolved, resolved.layers[0], str(tmp_path / "blob"))
        assert elsewhere.requests == []
        assert (tmp_path / "blob").read_bytes() == SMALL


def test_blob_digests_are_validated_before_any_request(fake: FakeRegistry, tmp_path) -> None:
    from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument

    with client() as c:
        resolved = c.resolve(ref(fake))
        evil = m.Descriptor(m.MEDIA_TYPE_OCI_LAYER, "sha256:../../../etc/passwd", 1)
        before = len(fake.requests)
        with pytest.raises(InvalidArgument, match="lowercase hex"):
            c.fetch_blob(resolved, evil, str(tmp_path / "x"))
        with pytest.raises(InvalidArgument, match="lowercase hex"):
            c.fetch_blob_bytes(resolved, evil)
        assert len(fake.requests) == before
    assert os.listdir(tmp_path) == []


def test_config_bigger_than_the_limit_is_not_fetched(fake: FakeRegistry) -> None:
    with client() as c:
        resolved = c.resolve(ref(fake))
        big = m.Descriptor(m.MEDIA_TYPE_OCI_CONFIG, resolved.config.digest, 5 * 1024 * 1024)
        with pytest.raises(ManifestError, match="more than the 4194304 allowed"):
            c.fetch_blob_bytes(resolved, big)


def test_parallel_downloads_share_one_client(fake: FakeRegistry, tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    blobs = [os.urandom(50_000 + n) for n in range(6)]
    fake.add_image("many", blobs, tag="v1")
    with client() as c:
        resolved = c.resolve(ref(fake, "many:v1"))
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda n: c.fetch_blob(resolved, resolved.layers[n], str(tmp_path / str(n))), range(6)))
    assert [(tmp_path / str(n)).read_bytes() for n in range(6)] == blobs


# --- endpoints ----------------------------------------------------------------------------


def test_mirrors_in_order_then_origin() -> None:
    with FakeRegistry() as mirror_without, FakeRegistry() as origin, FakeRegistry() as mirror_with:
        origin.add_image("library/busybox", [SMALL], tag="latest")
        dead = "http://127.0.0.1:9"  # discard port: nothing listens on loopback
        config = DaemonConfig(registry_mirrors=(dead, mirror_without.url))
        with client(config=config, docker_hub_url=origin.url) as c:
            resolved = c.resolve(reference.parse("busybox"))
            assert resolved.endpoint.url == origin.url
            assert not resolved.endpoint.mirror
        assert mirror_without.count("GET", "/v2/library/busybox/manifests/latest") == 1
        mirror_with.add_image("library/busybox", [LAYER], tag="latest")
        config = DaemonConfig(registry_mirrors=(dead, mirror_with.url))
        with client(config=config, docker_hub_url=origin.url) as c:
            resolved = c.resolve(reference.parse("busybox"))
            assert resolved.endpoint.url == mirror_with.url
            assert resolved.endpoint.mirror
            assert c.fetch_blob_bytes(resolved, resolved.layers[0]) == LAYER
        assert origin.count("GET", "/manifests/") == 1


def test_mirrors_are_not_used_for_other_registries(fake: FakeRegistry) -> None:
    config = DaemonConfig(registry_mirrors=("http://127.0.0.1:9",))
    with client(config=config) as c:
        assert [e.url for e in c.endpoints(ref(fake))] == [f"https://{fake.host}", f"http://{fake.host}"]
        assert c.endpoints(reference.parse("busybox"), push=True)[0].url == "https://registry-1.docker.io"


def test_canonical_error_is_reported_after_mirrors_fail() -> None:
    with FakeRegistry() as mirror, FakeRegistry() as origin:
        config = DaemonConfig(registry_mirrors=(mirror.url,))
        with client(config=config, docker_hub_url=origin.url) as c, pytest.raises(NotFound) as caught:
            c.resolve(reference.parse("busybox"))
        assert f"registry {origin.host}" in str(caught.value)


def test_insecure_registries_and_cidrs_skip_verification_then_http() -> None:
    config = DaemonConfig(insecure_registries=("reg.example:5000", "10.1.0.0/16"))
    with client(config=config) as c:
        listed = c.endpoints(reference.parse("reg.example:5000/x"))
        assert [(e.url, e.verify) for e in listed] == [
            ("https://reg.example:5000", False),
            ("http://reg.example:5000", False),
        ]
        cidr = c.endpoints(reference.parse("10.1.2.3:443/x"))
        assert [e.url for e in cidr] == ["https://10.1.2.3:443", "http://10.1.2.3:443"]
        secure = c.endpoints(reference.parse("reg.example/x"))
        assert len(secure) == 1
        assert secure[0].verify not in (False, None)
        loopback = c.endpoints(reference.parse("[::1]:5000/x"))
        assert loopback[0].verify is not False, "loopback TLS is verified; only plain HTTP is allowed besides"
        assert loopback[1].url == "http://[::1]:5000"
    with client(validate_certs=False) as c:
        assert [e.verify for e in c.endpoints(reference.parse("reg.example/x"))] == [False]


def test_ca_path_file_and_directory_build_a_bundle(tmp_path) -> None:
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "a.crt").write_text(cert)
    (tmp_path / "certs" / "b.crt").write_text(cert.replace("MIIB", "MIIC"))
    (tmp_path / "certs" / "client.key").write_text("secret key")
    with client(ca_path=str(tmp_path / "certs")) as c:
        bundle = c.endpoints(reference.parse("reg.example/x"))[0].verify
        with open(bundle, encoding="utf-8") as handle:
            text = handle.read()
        assert "MIIB" in text
        assert "MIIC" in text
        assert "secret key" not in text
        assert os.path.exists(bundle)
    assert not os.path.exists(bundle), "temporary bundles are removed on close"
    per_host = tmp_path / "certs.d" / "reg.example:5443"
    per_host.mkdir(parents=True)
    (per_host / "ca.crt").write_text(cert.replace("MIIB", "MIID"))
    with client(certs_dirs=[str(tmp_path / "certs.d")]) as c:
        bundle = c.endpoints(reference.parse("reg.example:5443/x"))[0].verify
        with open(bundle, encoding="utf-8") as handle:
            assert "MIID" in handle.read()


def test_environment_proxy_is_honoured(fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeRegistry() as forward_proxy:
        forward_proxy.add_image("app", [SMALL], tag="v1")
        monkeypatch.setenv("http_proxy", forward_proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        with client() as c:
            c.resolve(ref(fake))
        assert any(r.path.startswith(f"http://{fake.host}/v2/app/manifests/v1") for r in forward_proxy.requests)


# --- push ----------------------------------------------------------------------------------


def test_push_blobs_mount_and_manifest_with_push_scope(tmp_path) -> None:
    with FakeRegistry(auth="bearer", users={"alice": "pw"}) as fake:
        base = fake.add_image("base", [SMALL], tag="v1")
        layer = tmp_path / "layer"
        layer.write_bytes(LAYER)
        config = tmp_path / "config"
        config.write_bytes(b'{"rootfs":{"type":"layers","diff_ids":["' + sha256(b"x").encode() + b'"]}}')
        target = ref(fake, "pushed:v2")
        with client(credentials=Credentials("alice", "pw")) as c:
            assert c.blob_exists(target, sha256(LAYER)) is False
            c.upload_blob(target, sha256(LAYER), str(layer), chunk_size=64_000)
            c.upload_blob(target, sha256(config.read_bytes()), str(config))
            assert c.blob_exists(target, sha256(LAYER)) is True
            assert c.mount_blob(target, base["layers"][0]["digest"], "base") is True
            assert c.mount_blob(target, sha256(b"absent"), "base") is False
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": m.MEDIA_TYPE_OCI_CONFIG,
                        "digest": sha256(config.read_bytes()),
                        "size": config.stat().st_size,
                    },
                    "layers": [{"mediaType": m.MEDIA_TYPE_OCI_LAYER_GZIP, "digest": sha256(LAYER), "size": len(LAYER)}],
                }
            ).encode()
            assert c.put_manifest(target, body, OCI_MANIFEST) == sha256(body)
            resolved = c.resolve(target)
            assert resolved.digest == sha256(body)
            assert c.fetch_blob_bytes(resolved, resolved.layers[0], limit=len(LAYER)) == LAYER
        assert fake.count("PATCH", "/blobs/uploads/") == 5
        assert fake.uploads == {}, "the refused mount's upload session was cancelled"
        push_scopes = {scope for grant in fake.token_grants for scope in grant.scopes}
        assert "repository:pushed:pull,push" in push_scopes
        assert "repository:base:pull" in push_scopes


def test_push_to_a_read_only_user_is_denied() -> None:
    with FakeRegistry(auth="basic", users={"alice": "pw"}) as fake:
        fake.script("POST", "/blobs/uploads/", 403, body=b'{"errors":[{"code":"DENIED","message":"read only"}]}')
        with client(credentials=Credentials("alice", "pw")) as c, pytest.raises(AuthenticationError) as caught:
            c.mount_blob(ref(fake, "x:1"), sha256(b"a"), "y")
        assert "denied user alice access" in str(caught.value)
        assert "read only" in str(caught.value)
