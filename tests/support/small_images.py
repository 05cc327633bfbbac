"""Tiny real images for fast tests: one gzip layer of a few files, owned by the caller.

The layer is a real tar (so a real pull unpacks it, also without root: the
files belong to the current uid/gid), the config names its diff_id, and the
manifest is OCI.  ``add_to_fake`` puts such an image into a
``support.fake_registry.FakeRegistry``.
"""

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from . import oci

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class SmallImage:
    """The bytes of one image: its layer blob, config and manifest."""

    layer: bytes
    diff_id: str
    config: bytes
    manifest: bytes

    @property
    def id(self) -> str:
        return _sha256(self.config)

    @property
    def digest(self) -> str:
        return _sha256(self.manifest)

    @property
    def layer_digest(self) -> str:
        return _sha256(self.layer)


def small_image(files: Dict[str, str], architecture: str = "amd64", created_by: str = "test layer") -> SmallImage:
    """An image of one layer holding *files* (path -> text)."""
    owner = {"uid": os.getuid(), "gid": os.getgid()}
    entries = [oci.file(path, text, **owner) for path, text in files.items()]
    tar = oci.tar_bytes(entries)
    layer = gzip.compress(tar, mtime=0)
    diff_id = _sha256(tar)
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "created": "2026-01-02T03:04:05Z",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [
                {"created": "2026-01-02T03:04:05Z", "created_by": created_by},
                {"created": "2026-01-02T03:04:05Z", "created_by": "CMD /bin/sh", "empty_layer": True},
            ],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha256(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    return SmallImage(layer, diff_id, config, manifest)


def add_to_fake(fake: Any, repository: str, image: SmallImage, tag: Optional[str] = "latest") -> SmallImage:
    """Serve *image* from a FakeRegistry as ``repository:tag``."""
    fake.add_blob(repository, image.layer)
    fake.add_blob(repository, image.config)
    fake.add_manifest(repository, image.manifest, OCI_MANIFEST, (tag,) if tag else ())
    return image


def blob_gets(fake: Any) -> List[str]:
    """Paths of the blob downloads a FakeRegistry served."""
    return [r.path for r in fake.requests if r.method == "GET" and "/blobs/sha256:" in r.path]
