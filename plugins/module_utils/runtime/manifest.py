"""Manifests, indexes and image configs: media types, strict parsing, platform choice.

Registries and mirrors are untrusted, so a document is accepted only when its
kind is unambiguous (CVE-2021-41190: the ``mediaType`` field must agree with
the response's Content-Type, and a document may not carry both ``manifests``
and ``config``/``layers``), its size is bounded (CVE-2020-1702), and every
digest in it is well formed before it is used anywhere (CVE-2024-3727).
Schema 1 is refused like Docker does.  Platform choice follows the OCI
image-index spec ("the first matching entry") with containerd's
normalisation of architecture names (RUNTIME-REFERENCE §1.5, §1.6).
"""

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from .digest import digest_bytes, split_digest, validate_digest
from .errors import IntegrityError, InvalidArgument, ManifestError

MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_MEDIA_TYPES = (MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_MANIFEST)
INDEX_MEDIA_TYPES = (MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX)
SCHEMA1_MEDIA_TYPES = (MEDIA_TYPE_DOCKER_SCHEMA1, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED)

# The Accept header of a manifest request: all four kinds (without the list
# types a registry may silently answer with one platform), then anything.
MANIFEST_ACCEPT = ", ".join((*MANIFEST_MEDIA_TYPES, *INDEX_MEDIA_TYPES, "*/*"))

# Layer media type -> compression ("gzip", "zstd" or None for a plain tar).
LAYER_COMPRESSION: Dict[str, Optional[str]] = {
    MEDIA_TYPE_OCI_LAYER: None,
    MEDIA_TYPE_OCI_LAYER_GZIP: "gzip",
    MEDIA_TYPE_OCI_LAYER_ZSTD: "zstd",
    MEDIA_TYPE_DOCKER_LAYER: None,
    MEDIA_TYPE_DOCKER_LAYER_GZIP: "gzip",
    MEDIA_TYPE_DOCKER_LAYER_ZSTD: "zstd",
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER: "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": None,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
}

# Config types Docker accepts: the two real ones plus what old registries sent.
CONFIG_MEDIA_TYPES = (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_OCI_CONFIG,
    "application/octet-stream",
    "application/json",
    "",
)

# Content-Types that say nothing about the kind of document.
_GENERIC_CONTENT_TYPES = ("", "application/json", "application/octet-stream", "text/plain")

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_CONFIG_SIZE = 4 * 1024 * 1024

SCHEMA1_MESSAGE = "schema1 manifests are deprecated; re-push the image with a current client"


@dataclass(frozen=True)
class Platform:
    """os/architecture[/variant], normalised like containerd (``linux/arm/v7``)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def normalized(self) -> "Platform":
        architecture, variant = normalize_architecture(self.architecture, self.variant)
        return Platform(self.os.lower(), architecture, variant)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor; ``digest`` is always validated, ``urls`` are never fetched."""

    media_type: str
    digest: str
    size: int
    urls: Tuple[str, ...] = ()
    annotations: Dict[str, str] = field(default_factory=dict)
    platform: Optional[Platform] = None

    @property
    def compression(self) -> Optional[str]:
        """ "gzip", "zstd" or None for a layer (callers should still sniff the magic bytes)."""
        return LAYER_COMPRESSION.get(self.media_type)


@dataclass(frozen=True)
class Manifest:
    """An image manifest (Docker schema2 or OCI) and the exact bytes it came from."""

    media_type: str
    digest: str
    raw: bytes
    config: Descriptor
    layers: Tuple[Descriptor, ...]
    annotations: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Index:
    """A multi-platform index (Docker manifest list or OCI index)."""

    media_type: str
    digest: str
    raw: bytes
    manifests: Tuple[Descriptor, ...]
    annotations: Dict[str, str] = field(default_factory=dict)

    @property
    def platforms(self) -> List[str]:
        """The platforms on offer, attestation entries (unknown/unknown) left out."""
        return [str(entry.platform) for entry in self.manifests if _selectable(entry)]


@dataclass(frozen=True)
class ImageConfig:
    """The image config blob: what the image ID names and what containers run with."""

    digest: str
    raw: bytes
    os: str
    architecture: str
    variant: str
    diff_ids: Tuple[str, ...]
    config: Dict[str, Any]
    history: Tuple[Dict[str, Any], ...]
    created: Optional[str]
    data: Dict[str, Any]

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)


def normalize_content_type(value: Optional[str]) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return (value or "").split(";", 1)[0].strip().lower()


def parse_manifest(
    body: bytes, content_type: Optional[str], expected_digest: Optional[str] = None, what: str = "manifest"
) -> Union[Manifest, Index]:
    """Parse a manifest or index body as served with *content_type*.

    With *expected_digest* (a fetch by digest) the body must hash to it.  The
    digest of the result is always computed from the raw bytes.
    """
    if len(body) > MAX_MANIFEST_SIZE:
        raise ManifestError(f"{what} is larger than {MAX_MANIFEST_SIZE} bytes; refusing to parse it")
    algorithm = split_digest(expected_digest)[0] if expected_digest else "sha256"
    digest = digest_bytes(body, algorithm)
    if expected_digest and digest != expected_digest:
        raise IntegrityError(f"{what} does not match its digest: expected {expected_digest}, got {digest}")
    document = _json_object(body, what)
    media_type = _media_type(document, normalize_content_type(content_type), what)
    if document.get("schemaVersion") != 2:
        raise ManifestError(f"{what} has schemaVersion {document.get('schemaVersion')!r}; only version 2 is supported")
    annotations = _annotations(document.get("annotations"), what)
    if media_type in INDEX_MEDIA_TYPES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{what} is an index without a 'manifests' list")
        manifests = tuple(
            _descriptor(entry, f"{what} entry {number}", with_platform=True) for number, entry in enumerate(entries)
        )
        return Index(media_type, digest, body, manifests, annotations)
    config = _descriptor(document.get("config"), f"config of {what}")
    if config.media_type not in CONFIG_MEDIA_TYPES:
        raise ManifestError(
            f"{what} is not a container image: its config has media type {config.media_type!r} "
            "(an artifact such as a Helm chart or signature cannot be run)"
        )
    raw_layers = document.get("layers")
    if not isinstance(raw_layers, list):
        raise ManifestError(f"{what} has no 'layers' list")
    layers = tuple(_descriptor(layer, f"layer {number} of {what}") for number, layer in enumerate(raw_layers))
    for number, layer in enumerate(layers):
        if layer.media_type not in LAYER_COMPRESSION:
            raise ManifestError(
                f"layer {number} of {what} has media type {layer.media_type!r}, which is not a container image "
                "layer (plain, gzip or zstd tar)"
            )
    return Manifest(media_type, digest, body, config, layers, annotations)


def _json_object(body: bytes, what: str) -> Dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return document


def _media_type(document: Dict[str, Any], content_type: str, what: str) -> str:
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError(f"{what} has a non-string mediaType")
    if (
        content_type in SCHEMA1_MEDIA_TYPES
        or declared in SCHEMA1_MEDIA_TYPES
        or document.get("schemaVersion") == 1
        or "fsLayers" in document
    ):
        raise ManifestError(f"{what}: {SCHEMA1_MESSAGE}")
    if "manifests" in document and ("layers" in document or "config" in document):
        raise ManifestError(f"{what} is ambiguous: it has both 'manifests' and 'layers'/'config' (CVE-2021-41190)")
    if declared:
        if content_type not in _GENERIC_CONTENT_TYPES and content_type != declared:
            raise ManifestError(
                f"{what} is ambiguous: its mediaType {declared!r} differs from the Content-Type {content_type!r} "
                "the registry sent (CVE-2021-41190)"
            )
        media_type = declared
    elif content_type not in _GENERIC_CONTENT_TYPES:
        media_type = content_type
    elif "manifests" in document:
        media_type = MEDIA_TYPE_OCI_INDEX
    elif "config" in document and "layers" in document:
        media_type = MEDIA_TYPE_OCI_MANIFEST
    else:
        raise ManifestError(f"{what} is neither an image manifest nor an index")
    if media_type not in (*MANIFEST_MEDIA_TYPES, *INDEX_MEDIA_TYPES):
        raise ManifestError(
            f"{what} has unsupported media type {media_type!r}; Docker schema2 and OCI manifests and indexes are"
            " supported"
        )
    wanted_key = "manifests" if media_type in INDEX_MEDIA_TYPES else "layers"
    unwanted_key = "layers" if media_type in INDEX_MEDIA_TYPES else "manifests"
    if unwanted_key in document or wanted_key not in document:
        raise ManifestError(f"{what} claims to be {media_type} but has the fields of another kind of document")
    return media_type


def _annotations(value: Any, what: str) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ManifestError(f"{what} has annotations that are not a map of strings")
    return dict(value)


def _descriptor(value: Any, what: str, with_platform: bool = False) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestError(f"{what} is not a descriptor object")
    media_type = value.get("mediaType", "")
    if not isinstance(media_type, str):
        raise ManifestError(f"{what} has a non-string mediaType")
    try:
        digest = validate_digest(value.get("digest"), f"digest of {what}")
    except InvalidArgument as exc:
        raise ManifestError(str(exc)) from None
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"{what} has an invalid size {size!r}")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise ManifestError(f"{what} has 'urls' that are not a list of strings")
    platform = None
    raw_platform = value.get("platform")
    if with_platform and raw_platform is not None:
        if not isinstance(raw_platform, dict):
            raise ManifestError(f"{what} has a platform that is not an object")
        parts = [raw_platform.get(key, "") for key in ("os", "architecture", "variant")]
        if not all(isinstance(part, str) for part in parts):
            raise ManifestError(f"{what} has a platform with non-string fields")
        platform = Platform(*parts)
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        urls=tuple(urls),
        annotations=_annotations(value.get("annotations"), what),
        platform=platform,
    )


def parse_config(
    body: bytes, descriptor: Optional[Descriptor] = None, layer_count: Optional[int] = None
) -> ImageConfig:
    """Parse an image config; check it against its descriptor and the manifest's layer count."""
    if len(body) > MAX_CONFIG_SIZE:
        raise ManifestError(f"image config is larger than {MAX_CONFIG_SIZE} bytes; refusing to parse it")
    if descriptor is not None:
        actual = digest_bytes(body, split_digest(descriptor.digest)[0])
        if actual != descriptor.digest or len(body) != descriptor.size:
            raise IntegrityError(
                f"image config does not match its descriptor: expected {descriptor.digest} ({descriptor.size} bytes),"
                f" got {actual} ({len(body)} bytes)"
            )
    digest = descriptor.digest if descriptor is not None else digest_bytes(body)
    document = _json_object(body, f"image config {digest}")
    rootfs = document.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise ManifestError(f"image config {digest} has no rootfs of type 'layers' with a diff_ids list")
    try:
        diff_ids = tuple(
            validate_digest(value, f"diff_id {number} of image config")
            for number, value in enumerate(rootfs["diff_ids"])
        )
    except InvalidArgument as exc:
        raise ManifestError(str(exc)) from None
    if layer_count is not None and layer_count != len(diff_ids):
        raise ManifestError(
            f"layers from manifest don't match image configuration: the manifest lists {layer_count} layers but"
            f" the config {digest} has {len(diff_ids)} diff_ids"
        )
    history = document.get("history")
    history = [] if history is None else history
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        raise ManifestError(f"image config {digest} has a 'history' that is not a list of objects")
    container_config = document.get("config")
    container_config = {} if container_config is None else container_config
    if not isinstance(container_config, dict):
        raise ManifestError(f"image config {digest} has a 'config' that is not an object")
    fields = {key: document.get(key, "") for key in ("os", "architecture", "variant")}
    if not all(isinstance(value, str) for value in fields.values()):
        raise ManifestError(f"image config {digest} has non-string os/architecture/variant")
    created = document.get("created")
    return ImageConfig(
        digest=digest,
        raw=body,
        os=fields["os"],
        architecture=fields["architecture"],
        variant=fields["variant"],
        diff_ids=diff_ids,
        config=container_config,
        history=tuple(history),
        created=created if isinstance(created, str) else None,
        data=document,
    )


# --- platforms -------------------------------------------------------------

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "amd64": "amd64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
    "386": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "arm": "arm",
}


def normalize_architecture(architecture: str, variant: str = "") -> Tuple[str, str]:
    """containerd's ``normalizeArch`` plus ``uname -m`` spellings (``armv7l`` -> arm/v7)."""
    architecture = architecture.lower()
    variant = variant.lower()
    if architecture.startswith("armv") and architecture[4:5].isdigit():
        variant = variant or "v" + architecture[4]
        architecture = "arm"
    if architecture == "armhf":
        variant = variant or "v7"
    elif architecture == "armel":
        variant = variant or "v6"
    architecture = _ARCH_ALIASES.get(architecture, architecture)
    if (architecture, variant) in (("amd64", "v1"), ("arm64", "8"), ("arm64", "v8"), ("arm64", "v8.0")):
        variant = ""
    elif architecture == "arm":
        if variant in ("", "7", "v7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return architecture, variant


def host_platform() -> Platform:
    """The platform of this machine (``os.uname()``), normalised."""
    uname = os.uname()
    architecture, variant = normalize_architecture(uname.machine)
    return Platform(uname.sysname.lower(), architecture, variant)


def parse_platform(text: str) -> Platform:
    """``linux/arm64/v8``, ``linux/amd64`` or a bare architecture (``arm64`` = linux/arm64)."""
    parts = text.strip().split("/") if isinstance(text, str) else []
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT] such as linux/arm64/v8")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    return Platform(*parts).normalized()


def compatible_platforms(wanted: Platform) -> List[Platform]:
    """Platforms that can run on *wanted*, best first (containerd's ``platformVector``)."""
    wanted = wanted.normalized()
    result = [wanted]
    if wanted.architecture == "amd64":
        level = _variant_number(wanted.variant)
        result += [Platform(wanted.os, "amd64", f"v{n}") for n in range(level - 1, 1, -1)]
        if wanted.variant:
            result.append(Platform(wanted.os, "amd64", ""))
        result.append(Platform(wanted.os, "386", ""))
    elif wanted.architecture == "arm64":
        if wanted.variant:
            result.append(Platform(wanted.os, "arm64", ""))
        result += [Platform(wanted.os, "arm", f"v{n}") for n in (8, 7, 6, 5)]
    elif wanted.architecture == "arm":
        level = _variant_number(wanted.variant)
        result += [Platform(wanted.os, "arm", f"v{n}") for n in range(level - 1, 4, -1)]
    return result


def _variant_number(variant: str) -> int:
    digits = variant[1:].split(".", 1)[0] if variant.startswith("v") else ""
    return int(digits) if digits.isdigit() else 1


def _selectable(entry: Descriptor) -> bool:
    platform = entry.platform
    return (
        platform is not None
        and platform.os not in ("", "unknown")
        and platform.architecture not in ("", "unknown")
        and entry.media_type in (*MANIFEST_MEDIA_TYPES, "")
    )


def select_manifest(index: Index, wanted: Optional[Platform] = None, what: str = "image") -> Descriptor:
    """The entry of *index* for *wanted* (default: this host), best match first, index order within a match.

    Entries without a platform or with ``unknown/unknown`` (build attestations)
    are never chosen.  No match -> :class:`ManifestError` listing what exists.
    """
    wanted = wanted or host_platform()
    candidates = [entry for entry in index.manifests if _selectable(entry)]
    for acceptable in compatible_platforms(wanted):
        for entry in candidates:
            if entry.platform is not None and entry.platform.normalized() == acceptable:
                return entry
    available = ", ".join(index.platforms) or "none"
    raise ManifestError(f"{what} has no manifest for platform {wanted}; available platforms: {available}")
