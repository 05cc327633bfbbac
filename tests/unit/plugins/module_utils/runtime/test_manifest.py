"""Manifest, index and config parsing (G3, G4, G6) and platform choice."""

import hashlib
import json
from typing import Any, Dict, List, Optional

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import manifest as m
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import (
    IntegrityError,
    InvalidArgument,
    ManifestError,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG = json.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(b"layer0"), sha(b"layer1")]},
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "history": [{"created_by": "ADD a"}, {"created_by": "ENV x", "empty_layer": True}, {"created_by": "ADD b"}],
        "created": "2024-01-01T00:00:00Z",
        "unknown-field": {"must": "not fail"},
    }
).encode()


def descriptor(data: bytes, media_type: str, **extra: Any) -> Dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


def image_manifest(media_type: Optional[str] = m.MEDIA_TYPE_OCI_MANIFEST, **changes: Any) -> Dict[str, Any]:
    docker = media_type == m.MEDIA_TYPE_DOCKER_MANIFEST
    doc: Dict[str, Any] = {
        "schemaVersion": 2,
        "config": descriptor(CONFIG, m.MEDIA_TYPE_DOCKER_CONFIG if docker else m.MEDIA_TYPE_OCI_CONFIG),
        "layers": [
            descriptor(b"gz0", m.MEDIA_TYPE_DOCKER_LAYER_GZIP if docker else m.MEDIA_TYPE_OCI_LAYER_GZIP),
            descriptor(b"zst1", m.MEDIA_TYPE_DOCKER_LAYER_ZSTD if docker else m.MEDIA_TYPE_OCI_LAYER_ZSTD),
        ],
    }
    if media_type:
        doc["mediaType"] = media_type
    doc.update(changes)
    return doc


def platform_entry(os_: str, arch: str, variant: str = "", digest_seed: Optional[bytes] = None) -> Dict[str, Any]:
    data = digest_seed or f"{os_}/{arch}/{variant}".encode()
    platform = {"os": os_, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return descriptor(data, m.MEDIA_TYPE_OCI_MANIFEST, platform=platform)


def index(entries: List[Dict[str, Any]], media_type: Optional[str] = m.MEDIA_TYPE_OCI_INDEX) -> Dict[str, Any]:
    doc: Dict[str, Any] = {"schemaVersion": 2, "manifests": entries}
    if media_type:
        doc["mediaType"] = media_type
    return doc


def body(doc: Dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("media_type", [m.MEDIA_TYPE_OCI_MANIFEST, m.MEDIA_TYPE_DOCKER_MANIFEST])
def test_image_manifests_of_both_kinds_parse(media_type: str) -> None:
    raw = body(image_manifest(media_type))
    parsed = m.parse_manifest(raw, media_type + "; charset=utf-8")
    assert isinstance(parsed, m.Manifest)
    assert parsed.media_type == media_type
    assert parsed.digest == sha(raw)
    assert parsed.raw == raw
    assert parsed.config.digest == sha(CONFIG)
    assert [layer.compression for layer in parsed.layers] == ["gzip", "zstd"]


@pytest.mark.parametrize("media_type", [m.MEDIA_TYPE_OCI_INDEX, m.MEDIA_TYPE_DOCKER_MANIFEST_LIST])
def test_indexes_of_both_kinds_parse_with_platforms(media_type: str) -> None:
    raw = body(index([platform_entry("linux", "amd64"), platform_entry("linux", "arm", "v7")], media_type))
    parsed = m.parse_manifest(raw, media_type)
    assert isinstance(parsed, m.Index)
    assert parsed.platforms == ["linux/amd64", "linux/arm/v7"]


def test_expected_digest_is_verified() -> None:
    raw = body(image_manifest())
    assert m.parse_manifest(raw, m.MEDIA_TYPE_OCI_MANIFEST, sha(raw)).digest == sha(raw)
    with pytest.raises(IntegrityError, match="does not match its digest"):
        m.parse_manifest(raw + b" ", m.MEDIA_TYPE_OCI_MANIFEST, sha(raw))


def test_sha512_expected_digest_is_hashed_with_sha512() -> None:
    raw = body(image_manifest())
    expected = "sha512:" + hashlib.sha512(raw).hexdigest()
    assert m.parse_manifest(raw, m.MEDIA_TYPE_OCI_MANIFEST, expected).digest == expected


@pytest.mark.parametrize(
    ("content_type", "doc"),
    [
        (m.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED, {"schemaVersion": 1, "name": "x", "tag": "t", "fsLayers": []}),
        ("application/json", {"schemaVersion": 1, "name": "x", "fsLayers": []}),
        (m.MEDIA_TYPE_DOCKER_SCHEMA1, {"schemaVersion": 1, "fsLayers": []}),
    ],
)
def test_schema1_is_refused_with_the_docker_message(content_type: str, doc: Dict[str, Any]) -> None:
    with pytest.raises(
        ManifestError, match="schema1 manifests are deprecated; re-push the image with a current client"
    ):
        m.parse_manifest(body(doc), content_type)


def test_media_type_differing_from_content_type_is_refused() -> None:
    raw = body(image_manifest(m.MEDIA_TYPE_OCI_MANIFEST))
    with pytest.raises(ManifestError, match="differs from the Content-Type"):
        m.parse_manifest(raw, m.MEDIA_TYPE_OCI_INDEX)


def test_document_with_both_manifests_and_layers_is_refused() -> None:
    doc = image_manifest()
    doc["manifests"] = [platform_entry("linux", "amd64")]
    with pytest.raises(ManifestError, match="both 'manifests' and 'layers'"):
        m.parse_manifest(body(doc), m.MEDIA_TYPE_OCI_MANIFEST)


def test_index_content_type_on_manifest_fields_is_refused() -> None:
    doc = image_manifest(media_type=None)
    with pytest.raises(ManifestError, match="fields of another kind"):
        m.parse_manifest(body(doc), m.MEDIA_TYPE_OCI_INDEX)


def test_kind_is_inferred_only_when_nothing_declares_it() -> None:
    parsed = m.parse_manifest(body(image_manifest(media_type=None)), "application/octet-stream")
    assert parsed.media_type == m.MEDIA_TYPE_OCI_MANIFEST
    parsed = m.parse_manifest(body(index([platform_entry("linux", "amd64")], None)), None)
    assert parsed.media_type == m.MEDIA_TYPE_OCI_INDEX


def test_oversized_manifest_is_refused() -> None:
    raw = body(image_manifest(annotations={"pad": "x" * m.MAX_MANIFEST_SIZE}))
    with pytest.raises(ManifestError, match="larger than 4194304 bytes"):
        m.parse_manifest(raw, m.MEDIA_TYPE_OCI_MANIFEST)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": {"mediaType": m.MEDIA_TYPE_OCI_CONFIG, "digest": "sha256:../../etc", "size": 1}}, "lowercase hex"),
        ({"config": {"mediaType": m.MEDIA_TYPE_OCI_CONFIG, "digest": sha(b""), "size": -1}}, "invalid size"),
        ({"config": {"mediaType": m.MEDIA_TYPE_OCI_CONFIG, "digest": sha(b""), "size": True}}, "invalid size"),
        ({"config": descriptor(b"x", "application/vnd.cncf.helm.config.v1+json")}, "not a container image"),
        ({"layers": [descriptor(b"x", "application/vnd.oci.image.layer.v1.tar+encrypted")]}, "not a container image"),
        ({"layers": "nope"}, "no 'layers' list"),
        ({"schemaVersion": 3}, "schemaVersion 3"),
        ({"layers": [dict(descriptor(b"x", m.MEDIA_TYPE_OCI_LAYER), urls=[1])]}, "'urls'"),
    ],
)
def test_malformed_manifests_are_refused(change: Dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        m.parse_manifest(body(image_manifest(**change)), m.MEDIA_TYPE_OCI_MANIFEST)


def test_non_json_and_non_object_are_refused() -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        m.parse_manifest(b"\xff{", m.MEDIA_TYPE_OCI_MANIFEST)
    with pytest.raises(ManifestError, match="not a JSON object"):
        m.parse_manifest(b"[]", m.MEDIA_TYPE_OCI_MANIFEST)


def test_urls_are_kept_as_data_only() -> None:
    layer = dict(descriptor(b"x", m.MEDIA_TYPE_DOCKER_FOREIGN_LAYER), urls=["https://evil.example/x"])
    parsed = m.parse_manifest(body(image_manifest(layers=[layer])), m.MEDIA_TYPE_OCI_MANIFEST)
    assert parsed.layers[0].urls == ("https://evil.example/x",)


def test_config_parses_and_keeps_unknown_fields() -> None:
    config = m.parse_config(CONFIG, m.Descriptor(m.MEDIA_TYPE_OCI_CONFIG, sha(CONFIG), len(CONFIG)), layer_count=2)
    assert config.digest == sha(CONFIG)
    assert config.diff_ids == (sha(b"layer0"), sha(b"layer1"))
    assert config.config["Cmd"] == ["sh"]
    assert len(config.history) == 3
    assert config.platform == m.Platform("linux", "amd64")
    assert config.data["unknown-field"] == {"must": "not fail"}


def test_config_layer_count_mismatch_is_refused() -> None:
    with pytest.raises(ManifestError, match="layers from manifest don't match image configuration"):
        m.parse_config(CONFIG, layer_count=3)


def test_config_not_matching_its_descriptor_is_refused() -> None:
    with pytest.raises(IntegrityError, match="does not match its descriptor"):
        m.parse_config(CONFIG, m.Descriptor(m.MEDIA_TYPE_OCI_CONFIG, sha(b"other"), len(CONFIG)))
    with pytest.raises(IntegrityError, match="does not match its descriptor"):
        m.parse_config(CONFIG, m.Descriptor(m.MEDIA_TYPE_OCI_CONFIG, sha(CONFIG), len(CONFIG) + 1))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"rootfs": {"type": "layers", "diff_ids": ["sha256:xyz"]}}, "lowercase hex"),
        ({"rootfs": {"type": "other", "diff_ids": []}}, "rootfs of type 'layers'"),
        ({}, "rootfs of type 'layers'"),
        ({"rootfs": {"type": "layers", "diff_ids": []}, "history": [1]}, "history"),
        ({"rootfs": {"type": "layers", "diff_ids": []}, "config": []}, "'config'"),
    ],
)
def test_malformed_configs_are_refused(config: Dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        m.parse_config(json.dumps(config).encode())


def test_oversized_config_is_refused() -> None:
    with pytest.raises(ManifestError, match="larger than"):
        m.parse_config(b" " * (m.MAX_CONFIG_SIZE + 1))


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", ("amd64", "")),
        ("aarch64", ("arm64", "")),
        ("armv7l", ("arm", "v7")),
        ("armv6l", ("arm", "v6")),
        ("armhf", ("arm", "v7")),
        ("armel", ("arm", "v6")),
        ("i686", ("386", "")),
        ("ppc64le", ("ppc64le", "")),
        ("s390x", ("s390x", "")),
        ("riscv64", ("riscv64", "")),
    ],
)
def test_uname_machines_normalise_like_containerd(machine: str, expected: tuple) -> None:
    assert m.normalize_architecture(machine) == expected


def test_host_platform_comes_from_uname(monkeypatch: pytest.MonkeyPatch) -> None:
    class Uname:
        sysname = "Linux"
        machine = "aarch64"

    monkeypatch.setattr(m.os, "uname", Uname)
    assert m.host_platform() == m.Platform("linux", "arm64", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/arm64/v8", m.Platform("linux", "arm64", "")),
        ("linux/arm64", m.Platform("linux", "arm64", "")),
        ("linux/amd64", m.Platform("linux", "amd64", "")),
        ("linux/x86_64", m.Platform("linux", "amd64", "")),
        ("linux/arm", m.Platform("linux", "arm", "v7")),
        ("linux/arm/v6", m.Platform("linux", "arm", "v6")),
        ("arm64", m.Platform("linux", "arm64", "")),
        ("Linux/AMD64", m.Platform("linux", "amd64", "")),
    ],
)
def test_explicit_platform_strings(text: str, expected: m.Platform) -> None:
    assert m.parse_platform(text) == expected


@pytest.mark.parametrize("text", ["", "linux//v7", "a/b/c/d", "/amd64"])
def test_invalid_platform_strings(text: str) -> None:
    with pytest.raises(InvalidArgument, match="OS/ARCH"):
        m.parse_platform(text)


MULTI = index(
    [
        platform_entry("unknown", "unknown", digest_seed=b"attestation"),
        platform_entry("linux", "amd64", digest_seed=b"amd64-first"),
        platform_entry("linux", "amd64", digest_seed=b"amd64-second"),
        platform_entry("linux", "arm64", "v8"),
        platform_entry("linux", "arm", "v7"),
        platform_entry("linux", "arm", "v6"),
        platform_entry("linux", "386"),
        platform_entry("windows", "amd64", digest_seed=b"windows"),
    ]
)


def parsed_multi() -> m.Index:
    parsed = m.parse_manifest(body(MULTI), m.MEDIA_TYPE_OCI_INDEX)
    assert isinstance(parsed, m.Index)
    return parsed


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [
        (m.Platform("linux", "amd64"), sha(b"amd64-first")),
        (m.Platform("linux", "arm64"), sha(b"linux/arm64/v8")),
        (m.Platform("linux", "arm64", "v8"), sha(b"linux/arm64/v8")),
        (m.Platform("linux", "arm", "v7"), sha(b"linux/arm/v7")),
        (m.Platform("linux", "arm", "v6"), sha(b"linux/arm/v6")),
        (m.Platform("linux", "386"), sha(b"linux/386/")),
        (m.Platform("windows", "amd64"), sha(b"windows")),
    ],
)
def test_first_matching_entry_is_chosen(wanted: m.Platform, chosen: str) -> None:
    assert m.select_manifest(parsed_multi(), wanted).digest == chosen


def test_compatible_fallbacks_follow_containerd_order() -> None:
    only_v6_and_386 = m.parse_manifest(
        body(index([platform_entry("linux", "386"), platform_entry("linux", "arm", "v6")])), m.MEDIA_TYPE_OCI_INDEX
    )
    assert isinstance(only_v6_and_386, m.Index)
    assert m.select_manifest(only_v6_and_386, m.Platform("linux", "arm64")).digest == sha(b"linux/arm/v6")
    assert m.select_manifest(only_v6_and_386, m.Platform("linux", "amd64")).digest == sha(b"linux/386/")
    assert m.compatible_platforms(m.Platform("linux", "amd64", "v3"))[:3] == [
        m.Platform("linux", "amd64", "v3"),
        m.Platform("linux", "amd64", "v2"),
        m.Platform("linux", "amd64", ""),
    ]


def test_no_match_lists_the_available_platforms_without_attestations() -> None:
    with pytest.raises(ManifestError) as caught:
        m.select_manifest(parsed_multi(), m.Platform("linux", "s390x"), "busybox:latest")
    message = str(caught.value)
    assert "busybox:latest has no manifest for platform linux/s390x" in message
    assert "linux/amd64, linux/amd64, linux/arm64/v8, linux/arm/v7, linux/arm/v6, linux/386, windows/amd64" in message
    assert "unknown" not in message


def test_attestation_entries_are_never_chosen() -> None:
    only_attestation = m.parse_manifest(body(index([platform_entry("unknown", "unknown")])), m.MEDIA_TYPE_OCI_INDEX)
    assert isinstance(only_attestation, m.Index)
    with pytest.raises(ManifestError, match="available platforms: none"):
        m.select_manifest(only_attestation, m.Platform("linux", "amd64"))


def test_host_platform_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m, "host_platform", lambda: m.Platform("linux", "arm", "v7"))
    assert m.select_manifest(parsed_multi()).digest == sha(b"linux/arm/v7")
