"""Image manifests written by Berth: OCI or Docker schema2, from a config and layer descriptors.

Pulled images keep the manifest they were pulled as; a manifest is built
here when an image is pushed in the other format, committed, or loaded from
a ``docker save`` archive (which has none).  Converting between the two
forms changes only media types: the config bytes (the image id) and the
layer blobs (their digests) stay the same.
"""

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from .errors import InvalidArgument

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

FORMATS = ("oci", "docker")
MANIFEST_TYPES = {"oci": OCI_MANIFEST, "docker": DOCKER_MANIFEST}
CONFIG_TYPES = {"oci": OCI_CONFIG, "docker": DOCKER_CONFIG}

# The same layer, named by each format (by compression).
LAYER_TYPES = {
    "oci": {
        "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
        "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
        "plain": "application/vnd.oci.image.layer.v1.tar",
    },
    "docker": {
        "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "zstd": "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "plain": "application/vnd.docker.image.rootfs.diff.tar",
    },
}


@dataclass(frozen=True)
class LayerDescriptor:
    """A layer blob as a manifest lists it."""

    digest: str
    size: int
    media_type: str


def format_of(manifest_media_type: str) -> str:
    """``oci`` or ``docker`` for a manifest media type."""
    for name, media_type in MANIFEST_TYPES.items():
        if media_type == manifest_media_type:
            return name
    raise InvalidArgument(f"{manifest_media_type} is not an image manifest type Berth writes")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidArgument(f"manifest format must be 'oci' or 'docker', not {fmt!r}")
    return fmt


def layer_media_type(media_type: str, fmt: str) -> str:
    """*media_type* (any known layer type) as format *fmt* names the same compression."""
    from .compression import media_type_compression

    compression = media_type_compression(media_type)
    return LAYER_TYPES[check_format(fmt)][compression]


def build_manifest(
    config_digest: str, config_size: int, layers: Sequence[LayerDescriptor], fmt: str = "oci"
) -> Tuple[bytes, str]:
    """(manifest bytes, media type) of an image in format *fmt*; deterministic for the same input."""
    check_format(fmt)
    document: Dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPES[fmt],
        "config": {"mediaType": CONFIG_TYPES[fmt], "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": layer_media_type(layer.media_type, fmt), "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    return json.dumps(document, indent=2).encode(), MANIFEST_TYPES[fmt]


def layers_of(record_layers: List[Dict[str, Any]]) -> List[LayerDescriptor]:
    """The layer descriptors of an image record (``ImageRecord.layers``)."""
    return [LayerDescriptor(layer["digest"], int(layer["size"]), layer["media_type"]) for layer in record_layers]
