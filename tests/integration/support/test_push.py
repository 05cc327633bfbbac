"""Push busybox to every registry variant, in OCI and Docker form, single and multi-platform,
and read everything back by digest with plain requests; cross-check with skopeo."""

import json
import os
import subprocess
from typing import Callable, List

import pytest
import requests
from support import images
from support.pusher import ACCEPT_ALL, PushResult, RegistryClient, RegistryClientError, push, sha256_digest
from support.registry import Registry

pytestmark = pytest.mark.registry


def _check_image_by_digest(client: RegistryClient, repo: str, result: PushResult) -> None:
    """The manifest and every blob it names come back byte-exact, addressed by digest."""
    response = client.get_manifest(repo, result.digest)
    assert response.status_code == 200, response.text
    assert response.content == result.manifest
    assert sha256_digest(response.content) == result.digest
    assert response.headers["Docker-Content-Digest"] == result.digest
    assert response.headers["Content-Type"] == result.media_type
    manifest = json.loads(response.content)
    assert manifest["config"]["digest"] == result.config_digest
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = client.get_blob(repo, descriptor["digest"])
        assert blob.status_code == 200
        assert sha256_digest(blob.content) == descriptor["digest"]
        assert len(blob.content) == descriptor["size"]
    config = json.loads(client.get_blob(repo, result.config_digest).content)  # type: ignore[arg-type]
    assert config["rootfs"]["diff_ids"] == result.diff_ids


@pytest.mark.parametrize("fmt", ["oci", "docker"])
@pytest.mark.parametrize("tag", ["latest", "multi"])
def test_push_and_read_back_by_digest(
    any_registry: Registry, fmt: str, tag: str, push_busybox: Callable[..., PushResult], unique_repo: str
) -> None:
    result = push_busybox(any_registry, repo=unique_repo, fmt=fmt, tag=tag)
    with any_registry.client() as client:
        by_tag = client.get_manifest(unique_repo, tag)
        assert by_tag.status_code == 200
        assert sha256_digest(by_tag.content) == result.digest
        if tag == "latest":
            assert result.media_type == (
                "application/vnd.oci.image.manifest.v1+json"
                if fmt == "oci"
                else "application/vnd.docker.distribution.manifest.v2+json"
            )
            _check_image_by_digest(client, unique_repo, result)
            return
        index = client.get_manifest(unique_repo, result.digest)
        assert index.content == result.manifest
        assert index.headers["Content-Type"] == result.media_type
        listed = json.loads(index.content)["manifests"]
        assert [m["digest"] for m in listed] == [c.digest for c in result.children]
        assert sorted(str(c.platform) for c in result.children) == sorted(images.MULTI_PLATFORMS)
        for entry, child in zip(listed, result.children):
            platform = "/".join(
                filter(
                    None, (entry["platform"]["os"], entry["platform"]["architecture"], entry["platform"].get("variant"))
                )
            )
            assert platform == child.platform
            _check_image_by_digest(client, unique_repo, child)
            marker = client.get_blob(unique_repo, child.layers[-1].digest)
            assert f"{platform}\n".encode() in _gunzip_tar_member(marker.content, images.PLATFORM_MARKER)


def _gunzip_tar_member(blob: bytes, name: str) -> bytes:
    import gzip
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


@pytest.mark.parametrize("fixture", ["registry_auth", "registry_tls_auth", "registry_token"])
def test_pulling_really_needs_credentials(
    fixture: str, request: pytest.FixtureRequest, push_busybox: Callable[..., PushResult], unique_repo: str
) -> None:
    reg: Registry = request.getfixturevalue(fixture)
    result = push_busybox(reg, repo=unique_repo)
    path = f"/v2/{unique_repo}/manifests/{result.digest}"
    with RegistryClient(reg.url, verify=reg.verify) as anonymous:
        assert anonymous.request("GET", path, headers={"Accept": ACCEPT_ALL}).status_code == 401
    user = reg.username or reg.token_server.username  # type: ignore[union-attr]
    with RegistryClient(reg.url, user, "wrong-password", verify=reg.verify) as wrong:
        if reg.auth == "basic":
            assert wrong.request("GET", path, headers={"Accept": ACCEPT_ALL}).status_code == 401
        else:
            with pytest.raises(RegistryClientError, match="answered 401"):
                wrong.request("GET", path, headers={"Accept": ACCEPT_ALL})
    with reg.client() as client:
        assert client.request("GET", path, headers={"Accept": ACCEPT_ALL}).status_code == 200


def test_second_push_skips_existing_blobs_and_keeps_digests(
    registry: Registry, busybox_layout: images.FixtureImages, unique_repo: str
) -> None:
    with registry.client() as client:
        first = push(client, unique_repo, busybox_layout.get("latest"), "latest", "oci")
        second = push(client, unique_repo, busybox_layout.get("latest"), "again", "oci")
        zstd = push(client, unique_repo, busybox_layout.get("zstd"), "zstd", "oci")
    assert len(first.uploaded) == 4
    assert second.uploaded == []
    assert second.digest == first.digest
    assert zstd.image_id == first.image_id, "same config (diff_ids) whatever the compression"
    assert zstd.layer_digests != first.layer_digests
    assert zstd.diff_ids == first.diff_ids


def test_tls_push_with_the_system_ca_fails(registry_tls: Registry, busybox_layout: images.FixtureImages) -> None:
    with (
        RegistryClient(registry_tls.url, verify="/etc/ssl/certs/ca-certificates.crt") as client,
        pytest.raises(requests.exceptions.SSLError),
    ):
        push(client, "berth-test/never", busybox_layout.get("latest"))


def _skopeo_args(reg: Registry) -> List[str]:
    args = ["--cert-dir", reg.ca_dir] if reg.tls else ["--tls-verify=false"]
    if reg.credentials:
        args += ["--creds", ":".join(reg.credentials)]
    elif reg.auth == "token":
        server = reg.token_server
        args += ["--creds", f"{server.username}:{server.password}"]  # type: ignore[union-attr]
    return args


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_skopeo_inspects_and_copies_from_every_variant(
    skopeo: str,
    any_registry: Registry,
    fmt: str,
    push_busybox: Callable[..., PushResult],
    unique_repo: str,
    tmp_path: object,
) -> None:
    result = push_busybox(any_registry, repo=unique_repo, fmt=fmt)
    ref = f"docker://{any_registry.reference(unique_repo, result.digest)}"
    args = _skopeo_args(any_registry)
    inspected = subprocess.run([skopeo, "inspect", *args, ref], capture_output=True, text=True, check=False)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == result.digest
    assert json.loads(inspected.stdout)["Layers"] == result.layer_digests
    dest = os.path.join(str(tmp_path), "copy")
    copy_args = [a.replace("--", "--src-", 1) if a.startswith("--") else a for a in args]
    copied = subprocess.run(
        [skopeo, "--insecure-policy", "copy", "--preserve-digests", *copy_args, ref, f"oci:{dest}:copy"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    for digest in [*result.layer_digests, result.config_digest]:
        assert os.path.exists(os.path.join(dest, "blobs", "sha256", digest.split(":")[1]))  # type: ignore[union-attr]


def test_skopeo_copies_a_multi_platform_index(
    skopeo: str, registry_tls: Registry, push_busybox: Callable[..., PushResult], unique_repo: str, tmp_path: object
) -> None:
    result = push_busybox(registry_tls, repo=unique_repo, tag="multi")
    dest = os.path.join(str(tmp_path), "all")
    ref = f"docker://{registry_tls.reference(unique_repo, 'multi')}"
    copied = subprocess.run(
        [
            skopeo,
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",
            "--src-cert-dir",
            registry_tls.ca_dir,
            ref,
            f"oci:{dest}:multi",
        ],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    with open(os.path.join(dest, "index.json"), encoding="utf-8") as handle:
        assert json.load(handle)["manifests"][0]["digest"] == result.digest
