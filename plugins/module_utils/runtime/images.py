"""Images: pull, look up, list, tag, remove, history, inspect — the public image API.

The CLI and the modules call this module (and ``containers.py``), never the
registry client or the store directly.  A pull resolves the reference on the
first endpoint that has it (mirrors first for docker.io), downloads the
missing blobs in parallel (``max-concurrent-downloads``), and unpacks each
missing layer, in order, as soon as its blob and the layer below are there.
Nothing becomes visible before it is verified: blobs by digest, layers by
diff_id, and the image record only once every layer is published.
"""

import contextlib
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .config import DaemonConfig
from .digest import validate_digest
from .errors import Conflict, IntegrityError, InvalidArgument, LayerError, NotFound
from .reference import Reference
from .reference import parse as parse_reference
from .store import ImageRecord, LayerRecord, Store, chain_ids

# Progress events: ("resolved", image, 0, n_layers), ("exists", layer, 0, size),
# ("waiting", layer, 0, size), ("downloading", layer, done, size),
# ("downloaded", layer, size, size), ("extracting", layer, 0, size),
# ("complete", layer, size, size), ("done", image_id, 0, 0).
Progress = Callable[[str, str, int, int], None]


def _quiet(event: str, subject: str, current: int, total: int) -> None:
    """The default progress sink: says nothing."""


class PullResult(NamedTuple):
    image: ImageRecord
    reference: Reference
    previous_id: Optional[str]
    downloaded_layers: int
    unpacked_layers: int

    @property
    def changed(self) -> bool:
        """The tag now names a different image than before the pull (or did not exist)."""
        return self.previous_id != self.image.id


class PushResult(NamedTuple):
    """What a push did: the manifest digest the tag names now, and each blob's fate."""

    reference: Reference
    digest: str
    media_type: str
    uploaded: List[str]
    mounted: List[str]
    existing: List[str]


class PullPlan(NamedTuple):
    """What a pull would do, found without downloading any blob (check mode).

    ``digest`` is the platform manifest digest and ``image_id`` the config
    digest the reference names (in the registry when it was asked, else
    locally); ``before`` is the local image the reference names now.
    """

    reference: Reference
    before: Optional[ImageRecord]
    digest: Optional[str]
    image_id: Optional[str]
    pull: bool

    @property
    def changed(self) -> bool:
        return self.before is None or self.before.id != self.image_id


class RemovalPlan(NamedTuple):
    """What ``rmi`` does: untag *untag*, and delete the image when *delete*."""

    record: ImageRecord
    untag: List[str]
    delete: bool

    def lines(self) -> List[str]:
        """Docker's ``Untagged: ...`` / ``Deleted: ...`` report of the removal."""
        lines = [f"Untagged: {parse_reference(tag).display}" for tag in self.untag]
        if self.delete:
            lines += [f"Untagged: {repo_digest}" for repo_digest in self.record.repo_digests]
            lines.append(f"Deleted: {self.record.id}")
        return lines


class RegistryOptions(NamedTuple):
    """How to reach registries for one operation (module/CLI options over daemon.json)."""

    username: Optional[str] = None
    password: Optional[str] = None
    auth_file: Optional[str] = None
    validate_certs: bool = True
    ca_path: Optional[str] = None
    registry_mirrors: Optional[Sequence[str]] = None
    insecure_registries: Optional[Sequence[str]] = None

    def client(self, config: DaemonConfig) -> Any:
        from .auth import Credentials
        from .registry import RegistryClient

        if (self.username is None) != (self.password is None):
            raise InvalidArgument("registry credentials need both a username and a password")
        credentials = Credentials(self.username, self.password) if self.username is not None else None
        effective = config.with_overrides(
            registry_mirrors=self.registry_mirrors, insecure_registries=self.insecure_registries
        )
        return RegistryClient(
            effective,
            credentials,
            auth_file=self.auth_file,
            validate_certs=self.validate_certs,
            ca_path=self.ca_path,
        )


# Layers unpacked at the same time by one pull (each in its own directory; see _unpack_concurrently).
# Two lets the next layer overlap the one below.  Measured on Debian+nginx, 2 cores: no change
# while the machine is idle (1.0 s either way: one applier and unpigz already fill both cores),
# 9-30% lower median while other processes compete for the cores.
CONCURRENT_UNPACKS = 2


class _LowerLayerFailed(LayerError):
    """A layer cannot be finished because one below it failed (that one's error is the one reported)."""


class _StreamBroken(Exception):
    """The download under a streamed unpack failed or started over."""


class _BlobStream:
    """Read a blob from its ``.partial`` file while this process's download thread writes it.

    The download reports how many bytes it has (``advanced``) and when it
    ended (``finished``); the reader follows with ``pread``, waiting for more
    bytes while the download runs.  A download that starts over (its count
    goes down) or fails breaks the stream: the caller then unpacks the stored
    blob instead.  Nothing read here is trusted: the unpacked layer must
    still match its diff_id and the stored blob its digest.
    """

    POLL = 0.05

    def __init__(self, path: str, size: int) -> None:
        import threading

        self.path = path
        self.size = size
        self.streaming = False
        self._changed = threading.Condition()
        self._written = 0
        self._started = False
        self._ended: Optional[bool] = None
        self._restarted = False
        self._fd: Optional[int] = None
        self._offset = 0

    # -- the download's side
    def advanced(self, done: int) -> None:
        with self._changed:
            if done < self._written:
                self._restarted = True
            self._written = done
            self._started = True
            self._changed.notify_all()

    def finished(self, ok: bool) -> None:
        with self._changed:
            self._ended = ok
            self._changed.notify_all()

    # -- the unpacker's side
    def wait_started(self) -> bool:
        """Wait until bytes arrive or the download ends; True when streaming is possible."""
        with self._changed:
            self._changed.wait_for(lambda: self._started or self._ended is not None)
            return self._ended is None

    def open(self) -> bool:
        import os

        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False  # already renamed into place: read the stored blob instead
        self.streaming = True
        return True

    def read(self, size: int = -1) -> bytes:
        import os

        if self._fd is None:
            raise _StreamBroken("the stream is not open")
        want = min(size if size and size > 0 else 1 << 20, self.size - self._offset)
        while want > 0:
            with self._changed:
                if self._restarted or self._ended is False:
                    raise _StreamBroken(f"the download of {self.path} failed or started over")
                ended = self._ended
            data = os.pread(self._fd, want, self._offset)
            if data:
                self._offset += len(data)
                return data
            if ended:
                raise _StreamBroken(f"{self.path} ended at {self._offset} of {self.size} bytes")
            with self._changed:
                if self._ended is None and not self._restarted:
                    self._changed.wait(self.POLL)
        return b""

    def close(self) -> None:
        import os

        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _suppress_missing() -> "contextlib.AbstractContextManager[Any]":
    return contextlib.suppress(FileNotFoundError)


def _looks_like_id(text: str) -> bool:
    candidate = text[7:] if text.startswith("sha256:") else text
    return 4 <= len(candidate) <= 64 and all(c in "0123456789abcdef" for c in candidate)


class Images:
    """The image side of one host's runtime."""

    def __init__(self, config: DaemonConfig, store: Optional[Store] = None) -> None:
        self.config = config
        self.store = store or Store(config.data_root)

    # -- lookups -------------------------------------------------------------

    def find(self, text: str) -> Optional[ImageRecord]:
        """The local image a name, tag, ``repo@digest``, id or id prefix refers to."""
        index = self.store.read_index()
        if _looks_like_id(text):
            candidate = text if text.startswith("sha256:") else "sha256:" + text
            if candidate in index["images"]:
                return ImageRecord.from_json(index["images"][candidate])
            matches = [image_id for image_id in index["images"] if image_id.startswith(candidate)]
            if len(matches) > 1:
                raise Conflict(f"image id prefix {text} is ambiguous: it matches {len(matches)} images")
            if matches:
                return ImageRecord.from_json(index["images"][matches[0]])
            if len(text) == 64 and not text.startswith("sha256:"):
                return None
        reference = parse_reference(text)
        if reference.digest:
            wanted = f"{reference.name}@{reference.digest}"
            for data in index["images"].values():
                if wanted in data.get("repo_digests", []) or data["manifest"] == reference.digest:
                    return ImageRecord.from_json(data)
            return None
        image_id = index["tags"].get(str(reference))
        return ImageRecord.from_json(index["images"][image_id]) if image_id else None

    def get(self, text: str) -> ImageRecord:
        record = self.find(text)
        if record is None:
            raise NotFound(f"no such image: {text} (pull it first)")
        return record

    def config_of(self, record: ImageRecord) -> Dict[str, Any]:
        """The image's config JSON (Entrypoint, Cmd, Env...), read from its verified blob."""
        import json

        return json.loads(self.store.read_blob(record.id))

    def tags_of(self, record: ImageRecord) -> List[str]:
        return self.store.tags_of(record.id)

    # -- pull ----------------------------------------------------------------

    def remote_digest(self, text: str, options: RegistryOptions, platform: Optional[str] = None) -> str:
        """The digest the registry serves now for a reference (platform manifest): for check mode."""
        from .manifest import parse_platform

        reference = parse_reference(text)
        with options.client(self.config) as client:
            return client.manifest_digest(reference, parse_platform(platform) if platform else None)

    def remote_image(self, text: str, options: RegistryOptions, platform: Optional[str] = None) -> Tuple[str, str]:
        """(platform manifest digest, image id) the registry serves now, from the manifest alone."""
        from .manifest import parse_platform

        reference = parse_reference(text)
        with options.client(self.config) as client:
            resolved = client.resolve(reference, parse_platform(platform) if platform else None)
            return resolved.digest, resolved.config.digest

    def remote_config(self, text: str, options: RegistryOptions, platform: Optional[str] = None) -> Dict[str, Any]:
        """The image config the registry serves now (a small blob, never a layer): for check mode."""
        from .manifest import parse_platform

        reference = parse_reference(text)
        with options.client(self.config) as client:
            resolved = client.resolve(reference, parse_platform(platform) if platform else None)
            return dict(client.fetch_config(resolved).data)

    def local_for_pull(self, text: str, platform: Optional[str] = None) -> Optional[ImageRecord]:
        """The local image *text* names, if it can stand for a pull of *platform* (any platform when None)."""
        record = self.find(str(parse_reference(text)))
        if record is None or not platform:
            return record
        from .manifest import Platform, compatible_platforms, parse_platform

        local = Platform(*[*record.platform.split("/"), "", ""][:3]).normalized()
        return record if local in compatible_platforms(parse_platform(platform)) else None

    def plan_pull(
        self, text: str, options: RegistryOptions, platform: Optional[str] = None, policy: str = "missing"
    ) -> PullPlan:
        """Predict :meth:`ensure` exactly, downloading no blob.

        ``policy="missing"`` is satisfied by a local image (of the platform,
        when one is asked); otherwise the registry is asked: a HEAD of the
        manifest tells whether the tag still names the platform manifest the
        local image was pulled as, and when it does not, the manifest itself
        (not its blobs) names the config, whose digest is the image id a pull
        would record.  Wrong credentials or a missing image fail here as the
        pull would.
        """
        reference, before, local = self._pull_subject(text, platform, policy)
        if policy == "missing" and local is not None:
            return PullPlan(reference, before, local.manifest, local.id, pull=False)
        if local is not None:
            digest = self.remote_digest(text, options, platform)
            if digest == local.manifest:
                return PullPlan(reference, before, digest, local.id, pull=True)
        digest, image_id = self.remote_image(text, options, platform)
        return PullPlan(reference, before, digest, image_id, pull=True)

    def _pull_subject(self, text: str, platform: Optional[str], policy: str) -> Tuple[Reference, Any, Any]:
        """``(reference, image the name has now, local image a pull of it would keep)`` for a pull *policy*."""
        if policy not in ("missing", "always"):
            raise InvalidArgument(f"pull policy must be 'missing' or 'always', not {policy!r}")
        reference = parse_reference(text)
        return reference, self.find(str(reference)), self.local_for_pull(text, platform)

    def ensure(
        self,
        text: str,
        options: Optional[RegistryOptions] = None,
        platform: Optional[str] = None,
        policy: str = "missing",
        progress: Progress = _quiet,
    ) -> PullPlan:
        """Make *text* present by *policy*: pull when missing (``missing``) or always (``always``).

        Returns what happened in the shape :meth:`plan_pull` predicts it.
        """
        reference, before, local = self._pull_subject(text, platform, policy)
        if policy == "missing" and local is not None:
            return PullPlan(reference, before, local.manifest, local.id, pull=False)
        result = self.pull(text, options, platform, progress)
        return PullPlan(reference, before, result.image.manifest, result.image.id, pull=True)

    def pull(
        self,
        text: str,
        options: Optional[RegistryOptions] = None,
        platform: Optional[str] = None,
        progress: Progress = _quiet,
    ) -> PullResult:
        """Make the image *text* names present locally, downloading and unpacking what is missing."""
        from .manifest import parse_config, parse_platform

        reference = parse_reference(text)
        options = options or RegistryOptions()
        previous = self.find(str(reference)) if reference.tag or reference.digest else None
        self.store.ensure()
        with options.client(self.config) as client, self.store.in_use():
            resolved = client.resolve(reference, parse_platform(platform) if platform else None)
            progress("resolved", resolved.digest, 0, len(resolved.layers))
            if self.store.has_blob(resolved.config.digest):
                config = parse_config(self.store.read_blob(resolved.config.digest), resolved.config)
            else:
                config = client.fetch_config(resolved)
            if len(config.diff_ids) != len(resolved.layers):
                raise IntegrityError(
                    f"image {reference.display}: the manifest lists {len(resolved.layers)} layers but the config"
                    f" names {len(config.diff_ids)} diff_ids"
                )
            chains = chain_ids(config.diff_ids)
            downloaded, unpacked = self._fetch_layers(client, resolved, config.diff_ids, chains, progress)
            self.store.put_blob(config.raw)
            self.store.put_blob(resolved.raw)
            record = self._image_record(config, resolved, chains, [f"{reference.name}@{resolved.repo_digest}"])
            tags = [str(reference)] if reference.tag and not reference.digest else []
            self.store.add_image(record, tags)
        progress("done", record.id, 0, 0)
        return PullResult(record, reference, previous.id if previous else None, downloaded, unpacked)

    def _image_record(self, config: Any, manifest: Any, chains: Sequence[str], repo_digests: List[str]) -> ImageRecord:
        """The record of an image whose layers are all in the store: *manifest* and *config* parsed."""
        return ImageRecord(
            id=config.digest,
            manifest=manifest.digest,
            manifest_media_type=manifest.media_type,
            config_media_type=manifest.config.media_type,
            layers=[
                {"digest": layer.digest, "media_type": layer.media_type, "size": layer.size, "diff_id": diff_id}
                for layer, diff_id in zip(manifest.layers, config.diff_ids)
            ],
            chain_ids=list(chains),
            platform=str(config.platform),
            size=sum((self.store.layer(chain_id) or _NO_LAYER).size for chain_id in chains),
            created=config.created or "",
            repo_digests=repo_digests,
            added=time.time(),
        )

    def _fetch_layers(
        self, client: Any, resolved: Any, diff_ids: Sequence[str], chains: Sequence[str], progress: Progress
    ) -> Tuple[int, int]:
        """Download missing blobs in parallel; unpack missing layers bottom-up as they become ready.

        A layer whose download is under way when its turn comes is unpacked
        from the download as it arrives (:class:`_BlobStream`), so unpacking
        overlaps the network; it is published only once both its blob digest
        and its diff_id matched, and any trouble with the stream falls back to
        unpacking the stored, verified blob.
        """
        import threading
        from concurrent.futures import Future, ThreadPoolExecutor

        missing = [index for index, chain_id in enumerate(chains) if self.store.layer(chain_id) is None]
        for index, layer in enumerate(resolved.layers):
            if index not in missing:
                progress("exists", layer.digest, 0, layer.size)
        if not missing:
            return 0, 0
        downloads: Dict[int, Future] = {}
        streams: Dict[int, _BlobStream] = {}
        cancelled = threading.Event()
        workers = max(1, self.config.max_concurrent_downloads)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="berth-pull") as pool:
            for index in missing:
                layer = resolved.layers[index]
                progress("waiting", layer.digest, 0, layer.size)
                streams[index] = _BlobStream(self.store.blob_path(layer.digest) + ".partial", layer.size)
                downloads[index] = pool.submit(
                    self._download, client, resolved, layer, progress, cancelled, streams[index]
                )
            try:
                unpacked = self._unpack_concurrently(resolved, diff_ids, chains, missing, progress, streams, downloads)
            except BaseException:
                cancelled.set()
                raise
        downloaded = sum(1 for future in downloads.values() if future.result())
        return downloaded, unpacked

    def _unpack_concurrently(
        self,
        resolved: Any,
        diff_ids: Sequence[str],
        chains: Sequence[str],
        missing: Sequence[int],
        progress: Progress,
        streams: Dict[int, "_BlobStream"],
        downloads: Dict[int, Any],
    ) -> int:
        """Unpack the *missing* layers, up to :data:`CONCURRENT_UNPACKS` at a time; return how many were.

        A layer unpacks into its own directory while the layers below it are
        still being written; only its implied directories need their
        attributes, so it waits for the one below (published, hence every one
        below) before it finishes.  The lowest pending layer never waits, and
        the pool starts them bottom-up, so this always progresses.  The first
        error of the lowest failing layer is raised.
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor

        published = {index: threading.Event() for index in missing}
        failed: Dict[int, bool] = {}

        def below_ready(index: int) -> Callable[[], None]:
            def wait() -> None:
                below = index - 1
                if below in published:
                    published[below].wait()
                    if failed.get(below):
                        raise _LowerLayerFailed(
                            f"the layer below {resolved.layers[index].digest} could not be unpacked"
                        )

            return wait

        def unpack(index: int) -> bool:
            try:
                stream = streams[index] if streams[index].wait_started() else None
                if not stream:
                    downloads[index].result()
                return self._unpack(
                    resolved.layers[index],
                    diff_ids[index],
                    chains,
                    index,
                    progress,
                    stream,
                    downloads[index],
                    below_ready(index),
                )
            except BaseException:
                failed[index] = True
                raise
            finally:
                published[index].set()

        workers = max(1, min(CONCURRENT_UNPACKS, len(missing)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="berth-unpack") as pool:
            futures = [pool.submit(unpack, index) for index in missing]
            try:
                return sum(1 for future in futures if future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _download(
        self, client: Any, resolved: Any, layer: Any, progress: Progress, cancelled: Any, stream: "_BlobStream"
    ) -> bool:
        ok = False
        try:
            if cancelled.is_set():
                return False
            with self.store.blob_lock(layer.digest):
                if self.store.has_blob(layer.digest):
                    ok = True
                    progress("downloaded", layer.digest, layer.size, layer.size)
                    return False

                def report(done: int) -> None:
                    stream.advanced(done)
                    if not stream.streaming:
                        progress("downloading", layer.digest, done, layer.size)

                client.fetch_blob(resolved, layer, self.store.blob_path(layer.digest), report)
            ok = True
            if not stream.streaming:
                progress("downloaded", layer.digest, layer.size, layer.size)
            return True
        finally:
            stream.finished(ok)

    def _unpack(
        self,
        layer: Any,
        diff_id: str,
        chains: Sequence[str],
        index: int,
        progress: Progress,
        stream: "Optional[_BlobStream]" = None,
        download: Any = None,
        parents_ready: Optional[Callable[[], None]] = None,
    ) -> bool:
        """Unpack and publish one layer (False: it was complete already); see :meth:`_unpack_concurrently`."""
        from . import fsutil
        from .layers import apply_compressed

        chain_id = chains[index]
        with self.store.layer_lock(chain_id):
            if self.store.layer(chain_id) is not None:
                progress("complete", layer.digest, layer.size, layer.size)
                return False
            progress("extracting", layer.digest, 0, layer.size)
            self.store.remove_stale_workdirs(chain_id=chain_id)
            parents = [self.store.layer_diff(chains[below]) for below in range(index - 1, -1, -1)]
            workdir = self.store.new_layer_workdir(chain_id)
            try:
                applied = self._apply_streamed(
                    stream, download, workdir + "/diff", parents, layer.media_type, diff_id, parents_ready
                )
                if applied is None:
                    if download is not None:
                        download.result()  # a failed download is the error to report, not the missing blob
                    if stream is not None:
                        fsutil.remove_tree(workdir)
                        workdir = self.store.new_layer_workdir(chain_id)
                    applied = apply_compressed(
                        self.store.blob_path(layer.digest),
                        workdir + "/diff",
                        parents,
                        layer.media_type,
                        parents_ready=parents_ready,
                    )
                actual, stats = applied
                if actual != diff_id:
                    raise IntegrityError(
                        f"layer {layer.digest} unpacks to {actual}, but the image config says {diff_id};"
                        " the registry served content that does not belong to this image"
                    )
                record = LayerRecord(
                    chain_id=chain_id,
                    diff_id=diff_id,
                    parent=chains[index - 1] if index else None,
                    size=stats.bytes_written,
                    link="",
                    blob=layer.digest,
                    media_type=layer.media_type,
                )
                self.store.publish_layer(workdir, record)
            except BaseException:
                fsutil.remove_tree(workdir)
                raise
        progress("complete", layer.digest, layer.size, layer.size)
        return True

    @staticmethod
    def _apply_streamed(
        stream: "Optional[_BlobStream]",
        download: Any,
        target: str,
        parents: Sequence[str],
        media_type: str,
        diff_id: str,
        parents_ready: Optional[Callable[[], None]] = None,
    ) -> Optional[Tuple[str, Any]]:
        """Unpack from a blob still downloading; None when that did not work out (unpack the stored blob then)."""
        if stream is None or not stream.open():
            return None
        from .layers import apply_compressed

        applied: Optional[Tuple[str, Any]] = None
        try:
            applied = apply_compressed(stream, target, parents, media_type, parents_ready=parents_ready)  # type: ignore[arg-type]
        except _LowerLayerFailed:
            raise  # the stored blob would not fare better
        except Exception as exc:  # a broken stream, or a bad layer that the stored blob will show again
            import logging

            logging.getLogger(__name__).debug("unpacking %s as it downloaded failed: %s", stream.path, exc)
        finally:
            stream.close()
        download.result()  # the blob itself must have arrived whole and verified
        if applied is None or applied[0] != diff_id:
            return None
        return applied

    # -- recording images that do not come from a pull ------------------------------

    def _import_blob(self, opener: Callable[[], Any], digest: Optional[str] = None, size: Optional[int] = None) -> str:
        """Copy a blob into the store, verified against *digest* and *size* when given; return its digest.

        Without *digest* (a file made on this host) the digest is computed
        while copying.  A blob already in the store is not copied again.
        """
        import os
        import tempfile

        from . import fsutil
        from .digest import DigestCounter

        if digest is not None:
            validate_digest(digest, "blob digest")
            if self.store.has_blob(digest):
                return digest
        self.store.ensure()
        fd, temp = tempfile.mkstemp(prefix=".import-", dir=self.store.blobs)
        try:
            counter = DigestCounter(digest or "sha256")
            with os.fdopen(fd, "wb") as out, opener() as source:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    if size is not None and counter.size + len(chunk) > size:
                        raise IntegrityError(f"blob {digest} is longer than the {size} bytes its descriptor says")
                    counter.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if (digest is not None and counter.digest != digest) or (size is not None and counter.size != size):
                raise IntegrityError(
                    f"blob {digest} does not match its descriptor: got {counter.digest} ({counter.size} bytes,"
                    f" {size} expected)"
                )
            digest = counter.digest
            with self.store.blob_lock(digest):
                if not self.store.has_blob(digest):
                    os.chmod(temp, 0o600)
                    os.replace(temp, self.store.blob_path(digest))
                    fsutil.fsync_dir(self.store.blobs)
            return digest
        finally:
            with _suppress_missing():
                os.unlink(temp)

    def _record(
        self,
        manifest: bytes,
        manifest_media_type: str,
        config_raw: bytes,
        tags: Sequence[str],
        repo_digests: Sequence[str] = (),
        progress: Progress = _quiet,
    ) -> ImageRecord:
        """Record an image whose blobs are all in the store: verify, unpack missing layers, add it with *tags*."""
        from .digest import sha256_bytes
        from .manifest import parse_config, parse_manifest

        document = parse_manifest(manifest, manifest_media_type, None, "the image manifest")
        if not hasattr(document, "layers"):
            raise InvalidArgument("an image manifest is needed here, not an index")
        if sha256_bytes(config_raw) != document.config.digest:
            raise IntegrityError(f"the image config does not match the manifest's {document.config.digest}")
        config = parse_config(config_raw, document.config, len(document.layers))
        if len(config.diff_ids) != len(document.layers):
            raise IntegrityError(
                f"the manifest lists {len(document.layers)} layers but the config names {len(config.diff_ids)}"
            )
        chains = chain_ids(config.diff_ids)
        self.store.ensure()
        with self.store.in_use():
            for index, layer in enumerate(document.layers):
                if not self.store.has_blob(layer.digest):
                    raise NotFound(f"layer blob {layer.digest} is not in the store")
                if self.store.layer(chains[index]) is None:
                    self._unpack(layer, config.diff_ids[index], chains, index, progress)
                else:
                    progress("exists", layer.digest, 0, layer.size)
            self.store.put_blob(config_raw)
            self.store.put_blob(manifest)
            record = self._image_record(config, document, chains, list(repo_digests))
            self.store.add_image(record, [str(parse_reference(tag)) for tag in tags])
        return record

    def record_local_image(
        self,
        config_bytes: bytes,
        layers: Sequence[Tuple[str, str, str]],
        tags: Sequence[str] = (),
        fmt: str = "oci",
    ) -> ImageRecord:
        """Record an image made on this host (``commit``): its config and layers, and tag it.

        *layers* are ``(blob, diff_id, media_type)`` bottom-up, where *blob* is
        the path of a compressed layer file (copied in, its digest computed)
        or the digest of a blob already in the store.  The config's
        ``rootfs.diff_ids`` must list the same diff_ids.  The layer trees are
        unpacked from the blobs and checked against their diff_ids, exactly as
        a pull leaves them; an OCI (or Docker, *fmt*) manifest is written.
        """
        import json
        import os

        from .digest import is_valid_digest, sha256_bytes
        from .imageformat import LayerDescriptor, build_manifest

        try:
            configured = json.loads(config_bytes)["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError):
            raise InvalidArgument("the image config needs rootfs.diff_ids") from None
        if list(configured) != [diff_id for _blob, diff_id, _type in layers]:
            raise InvalidArgument("the config's rootfs.diff_ids must list the layers' diff_ids, bottom-up")
        descriptors = []
        for blob, _diff_id, media_type in layers:
            if is_valid_digest(blob):
                if not self.store.has_blob(blob):
                    raise NotFound(f"layer blob {blob} is not in the store")
                digest = blob
            else:
                digest = self._import_blob(lambda path=blob: open(path, "rb"))  # type: ignore[misc]  # noqa: SIM115
            descriptors.append(LayerDescriptor(digest, os.path.getsize(self.store.blob_path(digest)), media_type))
        manifest, media_type = build_manifest(sha256_bytes(config_bytes), len(config_bytes), descriptors, fmt)
        return self._record(manifest, media_type, config_bytes, tags)

    # -- push ------------------------------------------------------------------------

    def push_plan(self, text: str, target: Optional[str] = None, fmt: Optional[str] = None) -> Tuple[Any, bytes, str]:
        """(target reference, manifest bytes, media type) that :meth:`push` would send; nothing is sent."""
        from .imageformat import build_manifest, check_format, format_of, layers_of

        record = self.get(text)
        reference = parse_reference(target or text)
        if reference.digest:
            raise InvalidArgument(f"cannot push to {target or text}: name a tag, not a digest")
        manifest = self.store.read_blob(record.manifest)
        keep = fmt is None
        if not keep:
            try:
                keep = format_of(record.manifest_media_type) == check_format(fmt)  # type: ignore[arg-type]
            except InvalidArgument:
                keep = False
        if keep:
            return reference, manifest, record.manifest_media_type
        config = self.store.read_blob(record.id)
        body, media_type = build_manifest(record.id, len(config), layers_of(record.layers), fmt or "oci")
        return reference, body, media_type

    def login(self, registry: str, options: RegistryOptions) -> str:
        """``docker login``: check *options*' credentials with *registry*, then store them; return the file.

        *registry* is a host (``docker.io`` by default in the CLI) or a URL
        like ``https://index.docker.io/v1/``.  Nothing is stored when the
        registry refuses the credentials.
        """
        from .auth import normalize_auth_key, save_credentials

        if options.username is None or options.password is None:
            raise InvalidArgument("login needs a username and a password")
        host = normalize_auth_key(registry).split("/", 1)[0]
        if not host:
            raise InvalidArgument(f"{registry!r} does not name a registry")
        reference = parse_reference(f"{host}/berth/login")  # only its registry matters
        with options.client(self.config) as client:
            client.check_login(reference)
        return save_credentials(host, client.credentials, options.auth_file)

    @staticmethod
    def logout(registry: str, auth_file: Optional[str] = None) -> bool:
        """``docker logout``: forget the stored credentials of *registry*; False when there were none."""
        from .auth import remove_credentials

        return remove_credentials(registry, auth_file)

    def push(
        self,
        text: str,
        target: Optional[str] = None,
        options: Optional[RegistryOptions] = None,
        fmt: Optional[str] = None,
        progress: Progress = _quiet,
    ) -> PushResult:
        """Push a local image to *target* (default: its own name), in *fmt* (default: as it was pulled).

        Each blob the repository already has (HEAD) is skipped; one that the
        image was pulled with from another repository of the same registry is
        mounted from there when the registry allows it; the rest is uploaded
        (in chunks when large).  The manifest goes last, so the tag never names
        an incomplete image.
        """
        options = options or RegistryOptions()
        record = self.get(text)
        reference, manifest, media_type = self.push_plan(text, target, fmt)
        sources = [
            parse_reference(repo_digest.split("@", 1)[0]) for repo_digest in record.repo_digests if "@" in repo_digest
        ]
        mount_from = [source.repository for source in sources if source.domain == reference.domain]
        result = PushResult(reference, "", media_type, [], [], [])
        blobs = [(layer["digest"], int(layer["size"])) for layer in record.layers]
        blobs.append((record.id, len(self.store.read_blob(record.id))))
        with options.client(self.config) as client:
            for digest, size in blobs:
                if client.blob_exists(reference, digest):
                    result.existing.append(digest)
                    progress("exists", digest, size, size)
                    continue
                if any(
                    source != reference.repository and client.mount_blob(reference, digest, source)
                    for source in mount_from
                ):
                    result.mounted.append(digest)
                    progress("mounted", digest, size, size)
                    continue
                path = self.store.blob_path(digest)

                def report(done: int, digest: str = digest, size: int = size) -> None:
                    progress("pushing", digest, done, size)

                client.upload_blob(reference, digest, path, report)
                result.uploaded.append(digest)
                progress("pushed", digest, size, size)
            result = result._replace(digest=client.put_manifest(reference, manifest, media_type))
        progress("done", result.digest, 0, 0)
        return result

    def registry_tag_digest(self, target: str, options: RegistryOptions) -> Optional[str]:
        """The digest *target*'s tag names in its registry now (None when the tag does not exist)."""
        with options.client(self.config) as client:
            return client.tag_digest(parse_reference(target))

    # -- save and load ------------------------------------------------------------

    def save(self, names: Sequence[str], out: Any) -> List[str]:
        """Write images to *out* (a binary stream) as an OCI image layout tar; return the references written."""
        from .archive import SavedImage, write_archive
        from .imageformat import layers_of

        chosen: Dict[str, SavedImage] = {}
        written: List[str] = []
        for name in names:
            record = self.get(name)
            image = chosen.get(record.id)
            if image is None:
                layers = [(layer, self.store.blob_path(layer.digest)) for layer in layers_of(record.layers)]
                image = SavedImage(
                    [],
                    self.store.read_blob(record.manifest),
                    record.manifest_media_type,
                    self.store.read_blob(record.id),
                    layers,
                )
                chosen[record.id] = image
            if _looks_like_id(name):
                tags = self.store.tags_of(record.id)
            else:
                reference = parse_reference(name)
                tags = [str(reference)] if reference.tag and not reference.digest else []
            for tag in tags:
                if tag not in image.names:
                    image.names.append(tag)
                    written.append(tag)
            if not tags:
                written.append(record.id)
        with self.store.in_use():
            write_archive(out, list(chosen.values()))
        return written

    def load(
        self, path: str, reference: Optional[str] = None, platform: Optional[str] = None, progress: Progress = _quiet
    ) -> List[Tuple[ImageRecord, List[str]]]:
        """Load every image of an archive (OCI layout tar or ``docker save``), verifying each blob and layer.

        *reference* names an image the archive leaves unnamed (or the only one).
        Returns each image with the names it got.
        """
        from .archive import ArchiveReader
        from .manifest import parse_platform

        loaded = []
        with ArchiveReader(path) as archive:
            found = archive.images(parse_platform(platform) if platform else None)
            if reference is not None and len(found) != 1:
                raise InvalidArgument(f"{path} holds {len(found)} images; a name fits only an archive of one")
            for image in found:
                names = [reference] if reference else list(image.names)
                for layer, opener in image.layers:
                    self._import_blob(opener, layer.digest, layer.size)
                    progress("loaded", layer.digest, layer.size, layer.size)
                record = self._record(image.manifest, image.manifest_media_type, image.config, names, progress=progress)
                loaded.append((record, [str(parse_reference(name)) for name in names]))
        return loaded

    def plan_load(self, path: str, name: str, platform: Optional[str] = None) -> PullPlan:
        """What :meth:`ensure_loaded` would do: the image *name* gets from the archive, read without storing."""
        from .archive import ArchiveReader
        from .digest import sha256_bytes
        from .manifest import parse_platform

        reference = parse_reference(name)
        with ArchiveReader(path) as archive:
            found = archive.images(parse_platform(platform) if platform else None)
        named = [image for image in found if str(reference) in image.names]
        if not named and len(found) == 1:
            named = found
        if not named:
            raise NotFound(f"archive {path} holds no image named {reference.display} (and more than one image)")
        image = named[0]
        before = self.find(str(reference))
        return PullPlan(reference, before, sha256_bytes(image.manifest), sha256_bytes(image.config), pull=True)

    def ensure_loaded(self, path: str, name: str, platform: Optional[str] = None) -> PullPlan:
        """Make *name* the image the archive has for it, loading only when the local image differs."""
        plan = self.plan_load(path, name, platform)
        if not plan.changed:
            return PullPlan(plan.reference, plan.before, plan.before.manifest, plan.image_id, pull=False)  # type: ignore[union-attr]
        from .archive import ArchiveReader

        with ArchiveReader(path) as archive:
            single = len(archive.images()) == 1
        for record, _names in self.load(path, name if single else None, platform):
            if record.id == plan.image_id:
                return PullPlan(plan.reference, plan.before, record.manifest, record.id, pull=True)
        raise NotFound(f"archive {path} did not yield the image for {plan.reference.display}")

    # -- local management ------------------------------------------------------

    def tag(self, source: str, target: str) -> Reference:
        record = self.get(source)
        reference = parse_reference(target)
        if reference.digest:
            raise InvalidArgument(f"cannot tag {target}: a tag cannot contain a digest")
        self.store.tag(record.id, str(reference))
        return reference

    def plan_remove(self, text: str, users: Callable[[str], List[str]], force: bool = False) -> RemovalPlan:
        """What :meth:`remove` would do, with the same errors, changing nothing (check mode)."""
        record = self.get(text)
        tags = self.store.tags_of(record.id)
        named_by_tag = not _looks_like_id(text) and "@" not in text
        if named_by_tag and len(tags) > 1:
            return RemovalPlan(record, [str(parse_reference(text))], delete=False)
        in_use = users(record.id)
        if in_use and force:
            return RemovalPlan(record, tags, delete=False)
        if in_use:
            raise Conflict(
                f"image {record.id[7:19]} is used by container(s) {', '.join(in_use)}: "
                "remove them first (or force to untag)"
            )
        return RemovalPlan(record, tags, delete=True)

    def remove(self, text: str, users: Callable[[str], List[str]], force: bool = False) -> List[str]:
        """``rmi``: untag, and delete the image (and unreferenced layers) once no tag is left.

        *users* lists the containers that use an image id.  Returns Docker's
        ``Untagged: ...`` / ``Deleted: ...`` lines.
        """
        plan = self.plan_remove(text, users, force)
        if plan.delete:
            self.store.remove_image(plan.record.id, users(plan.record.id))
            self.store.collect_garbage()
        else:
            for tag in plan.untag:
                self.store.untag(tag)
        return plan.lines()

    def list(self) -> List[Tuple[ImageRecord, List[str]]]:
        index = self.store.read_index()
        result = []
        for data in index["images"].values():
            record = ImageRecord.from_json(data)
            result.append((record, self.store.tags_of(record.id, index)))
        result.sort(key=lambda item: item[0].added, reverse=True)
        return result

    def history(self, text: str) -> List[Dict[str, Any]]:
        """Docker's ``history``: newest first, empty layers shown with size 0, ids for the image only."""
        record = self.get(text)
        config = self.config_of(record)
        entries = config.get("history") or []
        sizes = [(self.store.layer(chain_id) or _NO_LAYER).size for chain_id in record.chain_ids]
        rows: List[Dict[str, Any]] = []
        layer_index = 0
        if not entries:
            entries = [{"created": config.get("created", ""), "created_by": ""} for _layer in record.chain_ids]
        for entry in entries:
            empty = bool(entry.get("empty_layer"))
            size = 0
            if not empty:
                if layer_index >= len(sizes):
                    raise IntegrityError(f"image {record.id}: too many non-empty layers in its history")
                size = sizes[layer_index]
                layer_index += 1
            rows.append(
                {
                    "created": entry.get("created", ""),
                    "created_by": entry.get("created_by", ""),
                    "comment": entry.get("comment", ""),
                    "author": entry.get("author", ""),
                    "size": size,
                    "empty_layer": empty,
                }
            )
        rows.reverse()
        for position, row in enumerate(rows):
            row["id"] = record.id if position == 0 else "<missing>"
        return rows

    def inspect(self, text: str) -> Dict[str, Any]:
        """Docker's ``image inspect`` shape, plus what Berth keeps of the layers."""
        record = self.get(text)
        config = self.config_of(record)
        return {
            "Id": record.id,
            "RepoTags": [parse_reference(tag).display for tag in self.store.tags_of(record.id)],
            "RepoDigests": list(record.repo_digests),
            "Created": config.get("created", record.created),
            "Author": config.get("author", ""),
            "Architecture": config.get("architecture", ""),
            "Variant": config.get("variant", ""),
            "Os": config.get("os", ""),
            "Size": record.size,
            "Config": config.get("config") or {},
            "RootFS": {"Type": "layers", "Layers": [layer["diff_id"] for layer in record.layers]},
            "Metadata": {"LastTagTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.added))},
            "Berth": {
                "Manifest": record.manifest,
                "ManifestMediaType": record.manifest_media_type,
                "ChainIDs": list(record.chain_ids),
                "Layers": [
                    {"Digest": layer["digest"], "MediaType": layer["media_type"], "Size": layer["size"]}
                    for layer in record.layers
                ],
            },
        }


_NO_LAYER = LayerRecord(chain_id="", diff_id="", parent=None, size=0, link="")
