"""Image archives: write an OCI image layout as a tar (``save``), read OCI or ``docker save`` tars (``load``).

Written (``write_archive``): ``oci-layout``, ``index.json`` (one entry per
name, annotated with ``io.containerd.image.name`` = the full reference and
``org.opencontainers.image.ref.name`` = its tag, as containerd and Docker
write them), every blob once under ``blobs/sha256/``, and a Docker
``manifest.json`` beside it so ``docker load`` takes the same file.  Headers
are deterministic (mtime 0, root-owned), blobs stream from the store.

Read (:class:`ArchiveReader`): an OCI layout tar (Berth's, ``skopeo copy ...
oci-archive:``, ``docker save`` of Docker 25+) through its ``index.json``,
else a ``docker save`` / ``docker-archive:`` tar through its
``manifest.json`` (layers as named files, possibly uncompressed, no
manifest: one is built).  Archives are untrusted: member names are looked up
(never extracted), links are followed only inside the archive and only a few
levels, JSON documents are size-capped, and nothing here trusts a digest --
the caller verifies every blob it stores.
"""

import io
import json
import os
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

from .digest import sha256_bytes, split_digest, validate_digest
from .errors import InvalidArgument, ManifestError
from .imageformat import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, LayerDescriptor, build_manifest
from .manifest import INDEX_MEDIA_TYPES, MAX_MANIFEST_SIZE, Index, Platform, parse_manifest, select_manifest
from .reference import parse as parse_reference

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
MAX_LINK_HOPS = 8
CHUNK = 1 << 20


@dataclass
class SavedImage:
    """One image to write: its names, manifest, config, and where its layer blobs are."""

    names: List[str]
    manifest: bytes
    manifest_media_type: str
    config: bytes
    layers: List[Tuple[LayerDescriptor, str]]


@dataclass
class ArchivedImage:
    """One image found in an archive; ``layers`` open their blob's bytes (to be verified by the caller)."""

    names: List[str]
    manifest: bytes
    manifest_media_type: str
    config: bytes
    layers: List[Tuple[LayerDescriptor, Callable[[], BinaryIO]]] = field(default_factory=list)


# -- writing ----------------------------------------------------------------------------------


def _info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _blob_name(digest: str) -> str:
    algorithm, encoded = split_digest(digest)
    return f"blobs/{algorithm}/{encoded}"


def _annotations(name: str) -> Dict[str, str]:
    reference = parse_reference(name)
    return {NAME_ANNOTATION: str(reference), REF_ANNOTATION: reference.tag or reference.digest or "latest"}


def write_archive(out: IO[bytes], images: Sequence[SavedImage]) -> None:
    """Write *images* to *out* as an OCI image layout tar (with a Docker ``manifest.json``)."""
    index: List[Dict[str, Any]] = []
    docker: List[Dict[str, Any]] = []
    written: set = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info("blobs", directory=True))
        tar.addfile(_info("blobs/sha256", directory=True))

        def add_bytes(name: str, data: bytes) -> None:
            tar.addfile(_info(name, len(data)), io.BytesIO(data))

        add_bytes("oci-layout", OCI_LAYOUT)
        for image in images:
            for descriptor, path in image.layers:
                if descriptor.digest in written:
                    continue
                size = os.path.getsize(path)
                if size != descriptor.size:
                    raise ManifestError(f"layer blob {path} is {size} bytes, not the {descriptor.size} recorded")
                with open(path, "rb") as handle:
                    tar.addfile(_info(_blob_name(descriptor.digest), size), handle)
                written.add(descriptor.digest)
            for data in (image.config, image.manifest):
                digest = sha256_bytes(data)
                if digest not in written:
                    add_bytes(_blob_name(digest), data)
                    written.add(digest)
            descriptor = {
                "mediaType": image.manifest_media_type,
                "digest": sha256_bytes(image.manifest),
                "size": len(image.manifest),
            }
            index += [dict(descriptor, annotations=_annotations(name)) for name in image.names] or [descriptor]
            docker.append(
                {
                    "Config": _blob_name(sha256_bytes(image.config)),
                    "RepoTags": [parse_reference(name).display for name in image.names],
                    "Layers": [_blob_name(layer.digest) for layer, _path in image.layers],
                }
            )
        add_bytes("index.json", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}).encode())
        add_bytes("manifest.json", json.dumps(docker).encode())


# -- reading ----------------------------------------------------------------------------------


class ArchiveReader:
    """Look images up in an archive file (a seekable tar); use as a context manager."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by close()
        except (OSError, tarfile.TarError) as exc:
            raise InvalidArgument(f"{path} is not a readable tar archive: {exc}") from None
        self._members: Dict[str, tarfile.TarInfo] = {}
        for member in self._tar.getmembers():
            self._members[posixpath.normpath(member.name.lstrip("/")) if member.name.strip("/") else "."] = member

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> "ArchiveReader":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- members
    def _resolve(self, name: str) -> tarfile.TarInfo:
        """The regular file *name* stands for, following links inside the archive only."""
        current = posixpath.normpath(name.lstrip("/"))
        for _hop in range(MAX_LINK_HOPS):
            if current.startswith("../") or current == "..":
                raise InvalidArgument(f"archive {self.path}: {name} points outside the archive")
            member = self._members.get(current)
            if member is None:
                raise InvalidArgument(f"archive {self.path} has no file {name}")
            if member.isfile():
                return member
            if member.issym():
                current = posixpath.normpath(posixpath.join(posixpath.dirname(current), member.linkname))
            elif member.islnk():
                current = posixpath.normpath(member.linkname.lstrip("/"))
            else:
                raise InvalidArgument(f"archive {self.path}: {name} is not a regular file")
        raise InvalidArgument(f"archive {self.path}: {name} is a chain of more than {MAX_LINK_HOPS} links")

    def has(self, name: str) -> bool:
        return posixpath.normpath(name) in self._members

    def size(self, name: str) -> int:
        return int(self._resolve(name).size)

    def opener(self, name: str) -> Callable[[], BinaryIO]:
        member = self._resolve(name)

        def open_member() -> BinaryIO:
            handle = self._tar.extractfile(member)
            if handle is None:
                raise InvalidArgument(f"archive {self.path}: cannot read {name}")
            return handle  # type: ignore[return-value]

        return open_member

    def read(self, name: str, limit: int = MAX_MANIFEST_SIZE) -> bytes:
        member = self._resolve(name)
        if member.size > limit:
            raise ManifestError(f"archive {self.path}: {name} is {member.size} bytes, more than {limit} allowed")
        with self.opener(name)() as handle:
            return handle.read(limit + 1)

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as exc:
            raise ManifestError(f"archive {self.path}: {name} is not valid JSON: {exc}") from None

    # -- images
    def images(self, platform: Optional[Platform] = None) -> List[ArchivedImage]:
        """Every image the archive names (OCI ``index.json`` first, else Docker's ``manifest.json``)."""
        if self.has("index.json"):
            return self._oci_images(platform)
        if self.has("manifest.json"):
            return self._docker_images()
        raise InvalidArgument(
            f"{self.path} is neither an OCI image layout (index.json) nor a docker save archive (manifest.json)"
        )

    def _blob(self, digest: str) -> bytes:
        return self.read(_blob_name(validate_digest(digest, "blob digest")))

    def _oci_images(self, platform: Optional[Platform]) -> List[ArchivedImage]:
        index = parse_manifest(self.read("index.json"), None, None, f"index.json of {self.path}")
        if not isinstance(index, Index):
            raise ManifestError(f"index.json of {self.path} is not an image index")
        found: Dict[str, ArchivedImage] = {}
        for entry in index.manifests:
            digest = validate_digest(entry.digest, "manifest digest")
            body = self._blob(digest)
            document = parse_manifest(body, entry.media_type, digest, f"manifest {digest} in {self.path}")
            if isinstance(document, Index) or entry.media_type in INDEX_MEDIA_TYPES:
                chosen = select_manifest(document, platform, f"{self.path} ({digest})")  # type: ignore[arg-type]
                digest = chosen.digest
                body = self._blob(digest)
                document = parse_manifest(body, chosen.media_type, digest, f"manifest {digest} in {self.path}")
                if isinstance(document, Index):
                    raise ManifestError(f"{self.path}: nested indexes are not supported")
            image = found.get(digest)
            if image is None:
                layers = [
                    (LayerDescriptor(layer.digest, layer.size, layer.media_type), self.opener(_blob_name(layer.digest)))
                    for layer in document.layers
                ]
                image = found[digest] = ArchivedImage([], body, document.media_type, self._blob(document.config.digest))
                image.layers = layers
            name = _name_of(entry.annotations)
            if name and name not in image.names:
                image.names.append(name)
        return list(found.values())

    def _docker_images(self) -> List[ArchivedImage]:
        entries = self.read_json("manifest.json")
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise ManifestError(f"manifest.json of {self.path} must be a list of objects")
        result = []
        for entry in entries:
            config_name, layer_names = entry.get("Config"), entry.get("Layers")
            if not isinstance(config_name, str) or not isinstance(layer_names, list):
                raise ManifestError(f"manifest.json of {self.path}: each entry needs Config and Layers")
            config = self.read(config_name)
            layers = []
            for layer_name in layer_names:
                if not isinstance(layer_name, str):
                    raise ManifestError(f"manifest.json of {self.path}: layer names must be strings")
                opener = self.opener(layer_name)
                digest = _sha256_of(opener)
                media_type = _docker_layer_type(opener)
                layers.append((LayerDescriptor(digest, self.size(layer_name), media_type), opener))
            manifest, media_type = build_manifest(
                sha256_bytes(config), len(config), [layer for layer, _opener in layers], "docker"
            )
            tags = entry.get("RepoTags") or []
            names = [str(parse_reference(tag)) for tag in tags if isinstance(tag, str)]
            result.append(ArchivedImage(names, manifest, media_type, config, layers))
        return result


def _name_of(annotations: Dict[str, str]) -> Optional[str]:
    """The full reference an index entry names, if any (a bare tag names no repository)."""
    for key in (NAME_ANNOTATION, REF_ANNOTATION):
        value = annotations.get(key)
        if not value:
            continue
        try:
            reference = parse_reference(value)
        except InvalidArgument:
            continue
        if key == REF_ANNOTATION and "/" not in value and ":" not in value:
            continue  # "latest": a tag without a repository
        return str(reference)
    return None


def _sha256_of(opener: Callable[[], BinaryIO]) -> str:
    import hashlib

    digest = hashlib.sha256()
    with opener() as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _docker_layer_type(opener: Callable[[], BinaryIO]) -> str:
    from .compression import sniff
    from .imageformat import LAYER_TYPES

    with opener() as handle:
        head = handle.read(8)
    return LAYER_TYPES["docker"][sniff(head)]


__all__ = ["DOCKER_MANIFEST", "OCI_MANIFEST", "ArchiveReader", "ArchivedImage", "SavedImage", "write_archive"]
