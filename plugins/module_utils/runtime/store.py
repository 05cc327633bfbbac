"""The image store under the data root: verified blobs, unpacked layers, image metadata.

Layout (DESIGN.md, "State on disk")::

    <data-root>/                      0700: layer trees hold setuid binaries (CVE-2021-41091)
      blobs/sha256/<hex>              compressed layers, configs, manifests; verified
      layers/<chain-hex>/diff/        one unpacked layer in overlay form, shared by images
      layers/<chain-hex>/layer.json   written last: the layer is complete
      layers/l/<short>                -> ../<chain-hex>/diff, keeps overlay mount data short
      images/index.json               image records and tags
      locks/                          flock files

Every write is atomic and every published thing is complete: a blob is
renamed into place only after its digest matched, a layer directory only after
it was fully unpacked and its diff_id matched, and the index only by
write-then-rename.  A killed pull leaves at most ``*.partial`` blobs (resumed
by the next pull) and ``layers/tmp-*`` directories (removed by the next
pull or ``verify --repair``), never a corrupt image.

Concurrency: the index has its own lock; a blob or a layer is fetched or
unpacked by one process at a time (per-digest locks, the others wait and then
find it done); garbage collection takes the ``gc`` lock exclusively while
pulls and container creation hold it shared, so nothing in use disappears.
"""

import contextlib
import os
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence

from . import fsutil
from .digest import split_digest, validate_digest
from .errors import Conflict, IntegrityError, NotFound

SHORT_LINK_LENGTH = 12
EMPTY_INDEX: Dict[str, Any] = {"version": 1, "images": {}, "tags": {}}


class LayerRecord(NamedTuple):
    """One unpacked layer, keyed by its ChainID."""

    chain_id: str
    diff_id: str
    parent: Optional[str]
    size: int
    link: str
    blob: Optional[str] = None
    media_type: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "LayerRecord":
        return cls(**{key: data.get(key) for key in cls._fields})


class ImageRecord:
    """What the store knows of one image: its config digest is its id.

    A plain class, not a dataclass: this module is imported by every
    ``berth`` command, and dataclasses cost ~15 ms of each start (measured).
    """

    __slots__ = (
        "added",
        "chain_ids",
        "config_media_type",
        "created",
        "id",
        "layers",
        "manifest",
        "manifest_media_type",
        "platform",
        "repo_digests",
        "size",
    )

    def __init__(
        self,
        id: str,
        manifest: str,
        manifest_media_type: str,
        config_media_type: str,
        layers: List[Dict[str, Any]],
        chain_ids: List[str],
        platform: str,
        size: int,
        created: str = "",
        repo_digests: Optional[List[str]] = None,
        added: float = 0.0,
    ) -> None:
        self.id = id
        self.manifest = manifest
        self.manifest_media_type = manifest_media_type
        self.config_media_type = config_media_type
        self.layers = layers
        self.chain_ids = chain_ids
        self.platform = platform
        self.size = size
        self.created = created
        self.repo_digests = [] if repo_digests is None else repo_digests
        self.added = added

    def __repr__(self) -> str:
        return f"ImageRecord({self.id!r}, platform={self.platform!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageRecord) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ImageRecord":
        return cls(**{key: data[key] for key in cls.__slots__ if key in data})

    @property
    def top_chain_id(self) -> Optional[str]:
        return self.chain_ids[-1] if self.chain_ids else None


def chain_ids(diff_ids: Sequence[str]) -> List[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))."""
    import hashlib

    result: List[str] = []
    for diff_id in diff_ids:
        validate_digest(diff_id, "diff_id")
        if not result:
            result.append(diff_id)
        else:
            result.append("sha256:" + hashlib.sha256(f"{result[-1]} {diff_id}".encode()).hexdigest())
    return result


class Store:
    """Blobs, layers and images under one data root."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        self.layers = os.path.join(root, "layers")
        self.links = os.path.join(self.layers, "l")
        self.images_dir = os.path.join(root, "images")
        self.index_path = os.path.join(self.images_dir, "index.json")
        self.locks = os.path.join(root, "locks")

    def ensure(self) -> "Store":
        """Create the directory skeleton (0700) if it is missing."""
        for path in (self.root, self.blobs, self.links, self.images_dir, self.locks):
            fsutil.makedirs(path, 0o700)
        from .layerfs import mark_top_directory

        mark_top_directory(self.layers)  # each layer an unrelated tree: let ext4 spread them (see there)
        return self

    # -- locks -------------------------------------------------------------

    def lock(self, name: str, shared: bool = False) -> "contextlib.AbstractContextManager[Any]":
        return fsutil.locked(os.path.join(self.locks, name + ".lock"), shared=shared)

    def in_use(self) -> "contextlib.AbstractContextManager[Any]":
        """Held (shared) while a pull or a container creation references layers: GC waits."""
        return self.lock("gc", shared=True)

    # -- blobs ---------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        algorithm, encoded = split_digest(digest)
        if algorithm != "sha256":
            raise IntegrityError(f"the store keeps sha256 blobs only, not {digest}")
        return os.path.join(self.blobs, encoded)

    def has_blob(self, digest: str) -> bool:
        return os.path.isfile(self.blob_path(digest))

    def read_blob(self, digest: str, limit: int = 4 * 1024 * 1024) -> bytes:
        """Read a small blob (manifest, config) and check it still matches its digest."""
        from .digest import verify_bytes

        path = self.blob_path(digest)
        try:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store at {self.root}") from None
        if len(data) > limit:
            raise IntegrityError(f"blob {digest} is larger than {limit} bytes")
        verify_bytes(data, digest, f"stored blob {path}")
        return data

    def put_blob(self, data: bytes) -> str:
        """Store *data* as a blob and return its digest (idempotent)."""
        from .digest import sha256_bytes

        digest = sha256_bytes(data)
        path = self.blob_path(digest)
        if not os.path.exists(path):
            fsutil.write_atomic(path, data, 0o600)
        return digest

    # -- layers --------------------------------------------------------------

    def layer_dir(self, chain_id: str) -> str:
        return os.path.join(self.layers, split_digest(chain_id)[1])

    def layer_diff(self, chain_id: str) -> str:
        return os.path.join(self.layer_dir(chain_id), "diff")

    def layer(self, chain_id: str) -> Optional[LayerRecord]:
        """The record of a complete layer, or None if it is absent or unfinished."""
        data = fsutil.read_json(os.path.join(self.layer_dir(chain_id), "layer.json"))
        return LayerRecord.from_json(data) if data else None

    def layer_lock(self, chain_id: str) -> "contextlib.AbstractContextManager[Any]":
        return self.lock("layer-" + split_digest(chain_id)[1])

    def blob_lock(self, digest: str) -> "contextlib.AbstractContextManager[Any]":
        return self.lock("blob-" + split_digest(digest)[1])

    def new_layer_workdir(self, chain_id: Optional[str] = None) -> str:
        """An empty directory on the layers filesystem to unpack into (then :meth:`publish_layer`).

        Named after *chain_id* when given, so the next unpack of that layer
        (holding its lock) can remove what a killed one left.
        """
        import tempfile

        prefix = f"tmp-{split_digest(chain_id)[1]}-" if chain_id else "tmp-"
        work = tempfile.mkdtemp(prefix=prefix, dir=self.layers)
        os.chmod(work, 0o700)
        fsutil.makedirs(os.path.join(work, "diff"), 0o755)
        return work

    def publish_layer(self, workdir: str, record: LayerRecord) -> LayerRecord:
        """Move a fully unpacked *workdir* into place as layer *record.chain_id*; return the record with its link.

        Call with the layer's lock held.  ``layer.json`` is written last, so a
        crash between the rename and it leaves a directory :meth:`layer`
        treats as absent and the next pull replaces.
        """
        final = self.layer_dir(record.chain_id)
        if os.path.lexists(final):
            fsutil.remove_tree(final)
        record = record._replace(link=self._short_link(record.chain_id))
        os.rename(workdir, final)
        fsutil.fsync_dir(self.layers)
        link_path = os.path.join(self.links, record.link)
        target = os.path.join("..", split_digest(record.chain_id)[1], "diff")
        if os.path.islink(link_path):
            os.unlink(link_path)
        os.symlink(target, link_path)
        fsutil.write_json_atomic(os.path.join(final, "layer.json"), record.to_json())
        return record

    def _short_link(self, chain_id: str) -> str:
        """A short, stable name under layers/l/ for *chain_id* (longer on a prefix collision)."""
        encoded = split_digest(chain_id)[1]
        for length in range(SHORT_LINK_LENGTH, len(encoded) + 1, 4):
            name = encoded[:length]
            path = os.path.join(self.links, name)
            if not os.path.islink(path) or os.readlink(path).split(os.sep)[1] == encoded:
                return name
        return encoded

    def lower_links(self, chain_ids_top_first: Sequence[str]) -> List[str]:
        """Short lowerdir names (relative to :attr:`links`) for an overlay mount, top-most first."""
        names = []
        for chain_id in chain_ids_top_first:
            record = self.layer(chain_id)
            if record is None:
                raise NotFound(f"layer {chain_id} is missing from the store; pull the image again")
            names.append(record.link)
        return names

    def remove_stale_workdirs(self, older_than: float = 0.0, chain_id: Optional[str] = None) -> List[str]:
        """Remove ``layers/tmp-*`` left by killed unpacks (only ones nobody is writing now).

        With *chain_id*, only that layer's (call with its lock held: then none is being written).
        """
        removed = []
        now = time.time()
        prefix = f"tmp-{split_digest(chain_id)[1]}-" if chain_id else "tmp-"
        for name in os.listdir(self.layers):
            path = os.path.join(self.layers, name)
            if name.startswith(prefix) and now - os.lstat(path).st_mtime >= older_than:
                fsutil.remove_tree(path)
                removed.append(path)
        return removed

    # -- images --------------------------------------------------------------

    def read_index(self) -> Dict[str, Any]:
        data = fsutil.read_json(self.index_path)
        if not data:
            return {"version": 1, "images": {}, "tags": {}}
        return data

    @contextlib.contextmanager
    def edit_index(self) -> Iterator[Dict[str, Any]]:
        """Read-modify-write the index under its lock; written only if the block changed it."""
        with self.lock("index"):
            index = self.read_index()
            before = repr(index)
            yield index
            if repr(index) != before:
                fsutil.write_json_atomic(self.index_path, index)

    def images(self) -> List[ImageRecord]:
        return [ImageRecord.from_json(data) for data in self.read_index()["images"].values()]

    def image(self, image_id: str) -> Optional[ImageRecord]:
        data = self.read_index()["images"].get(image_id)
        return ImageRecord.from_json(data) if data else None

    def tags_of(self, image_id: str, index: Optional[Dict[str, Any]] = None) -> List[str]:
        index = index if index is not None else self.read_index()
        return sorted(tag for tag, target in index["tags"].items() if target == image_id)

    def add_image(self, record: ImageRecord, tags: Sequence[str] = ()) -> None:
        """Record an image (its layers must be published) and point *tags* at it."""
        for chain_id in record.chain_ids:
            if self.layer(chain_id) is None:
                raise IntegrityError(f"cannot record image {record.id}: layer {chain_id} is not complete")
        with self.edit_index() as index:
            previous = index["images"].get(record.id)
            if previous:
                digests = list(dict.fromkeys(previous.get("repo_digests", []) + record.repo_digests))
                record.repo_digests = digests
                record.added = previous.get("added", record.added)
            index["images"][record.id] = record.to_json()
            for tag in tags:
                index["tags"][tag] = record.id

    def tag(self, image_id: str, tag: str) -> None:
        with self.edit_index() as index:
            if image_id not in index["images"]:
                raise NotFound(f"image {image_id} is not in the store")
            index["tags"][tag] = image_id

    def untag(self, tag: str) -> str:
        """Remove a tag; return the image id it pointed at."""
        with self.edit_index() as index:
            try:
                return index["tags"].pop(tag)
            except KeyError:
                raise NotFound(f"no such image tag: {tag}") from None

    def remove_image(self, image_id: str, users: Sequence[str] = ()) -> List[str]:
        """Forget an image and its tags; *users* (containers using it) make this a conflict."""
        if users:
            raise Conflict(
                f"image {image_id[7:19]} is used by container(s) {', '.join(users)}: "
                "remove them first (or force to untag)"
            )
        with self.edit_index() as index:
            if image_id not in index["images"]:
                raise NotFound(f"image {image_id} is not in the store")
            tags = [tag for tag, target in index["tags"].items() if target == image_id]
            for tag in tags:
                del index["tags"][tag]
            del index["images"][image_id]
        return tags

    # -- garbage collection ------------------------------------------------------

    def collect_garbage(self, keep_chain_ids: Sequence[str] = ()) -> Dict[str, List[str]]:
        """Remove layers and blobs no image references (and layers in *keep_chain_ids* stay).

        Runs with the ``gc`` lock held exclusively, so no pull or container
        creation is between publishing a layer and referencing it.
        """
        removed: Dict[str, List[str]] = {"layers": [], "blobs": []}
        with self.lock("gc"):
            index = self.read_index()
            wanted_layers = set(keep_chain_ids)
            wanted_blobs = set()
            for data in index["images"].values():
                wanted_layers.update(data["chain_ids"])
                wanted_blobs.update([data["id"], data["manifest"]])
                wanted_blobs.update(layer["digest"] for layer in data["layers"])
                wanted_blobs.update(data.get("extra_blobs", []))
            wanted_hex = {split_digest(chain_id)[1] for chain_id in wanted_layers}
            for name in os.listdir(self.layers):
                if name == "l" or name in wanted_hex:
                    continue
                fsutil.remove_tree(os.path.join(self.layers, name))
                removed["layers"].append(name)
            for name in os.listdir(self.links):
                path = os.path.join(self.links, name)
                if not os.path.exists(path):
                    os.unlink(path)
            wanted_blob_hex = {split_digest(digest)[1] for digest in wanted_blobs}
            for name in os.listdir(self.blobs):
                if name.split(".")[0] not in wanted_blob_hex:
                    os.unlink(os.path.join(self.blobs, name))
                    removed["blobs"].append(name)
        return removed

    # -- verification ----------------------------------------------------------

    def verify(self, deep: bool = False) -> List[str]:
        """Problems found in the store (empty when intact).

        Checks that every image's manifest, config and layer blobs exist and
        hash to their digests, that every layer is complete with the diff_id
        its image's config names, and that no unpack was left half-done.  With
        *deep*, each layer blob is decompressed again and its diff_id checked.
        """
        from .digest import new_hasher

        problems: List[str] = []
        index = self.read_index()
        checked: Dict[str, bool] = {}

        def check_blob(digest: str, what: str) -> None:
            if digest in checked:
                return
            path = self.blob_path(digest)
            if not os.path.isfile(path):
                problems.append(f"{what}: blob {digest} is missing")
                checked[digest] = False
                return
            hasher = new_hasher(digest)
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    hasher.update(chunk)
            ok = f"{split_digest(digest)[0]}:{hasher.hexdigest()}" == digest
            if not ok:
                problems.append(f"{what}: blob {digest} does not match its digest")
            checked[digest] = ok

        for image_id, data in sorted(index["images"].items()):
            label = f"image {image_id[7:19]}"
            check_blob(data["manifest"], label + " manifest")
            check_blob(image_id, label + " config")
            for number, (layer, chain_id) in enumerate(zip(data["layers"], data["chain_ids"]), 1):
                what = f"{label} layer {number}"
                if layer.get("digest"):
                    check_blob(layer["digest"], what)
                record = self.layer(chain_id)
                if record is None:
                    problems.append(f"{what}: layer {chain_id} is missing or incomplete")
                elif record.diff_id != layer["diff_id"]:
                    problems.append(f"{what}: layer {chain_id} holds diff_id {record.diff_id}, not {layer['diff_id']}")
                elif not os.path.isdir(self.layer_diff(chain_id)):
                    problems.append(f"{what}: layer directory {self.layer_diff(chain_id)} is missing")
                elif deep and layer.get("digest") and checked.get(layer["digest"]):
                    actual = _diff_id_of_blob(self.blob_path(layer["digest"]))
                    if actual != layer["diff_id"]:
                        problems.append(f"{what}: blob {layer['digest']} unpacks to {actual}, not {layer['diff_id']}")
        for tag, target in sorted(index["tags"].items()):
            if target not in index["images"]:
                problems.append(f"tag {tag} points at image {target}, which is not in the store")
        for name in sorted(os.listdir(self.layers)):
            if name.startswith("tmp-"):
                problems.append(f"unfinished unpack left at {os.path.join(self.layers, name)}")
        return problems


def _diff_id_of_blob(path: str) -> str:
    """sha256 of a layer blob's uncompressed bytes (gzip, zstd or plain, sniffed)."""
    import hashlib

    from .compression import open_decompressed

    digest = hashlib.sha256()
    with open(path, "rb") as handle, open_decompressed(handle) as (_compression, plain):
        for chunk in iter(lambda: plain.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
