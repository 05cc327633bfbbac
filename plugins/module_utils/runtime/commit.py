"""``commit``: a container's changes become a new image.

The container's ``upper/`` directory is its diff against its image (the
overlay is mounted with ``index=off,redirect_dir=off,metacopy=off``).
:func:`commit`:

1. holds the container's lock (no start, stop or rm meanwhile) and, when it
   runs and *pause* is set (the default, like Docker), freezes its cgroup
   while the upper directory is read, so the layer is one consistent moment;
2. leaves out what the runtime itself created there (:mod:`commit_paths`:
   mount points for ``/etc/hosts``, volumes, ``/proc``... when the image
   lacked them);
3. writes the layer (:func:`layerdiff.write_layer_blob`: OCI whiteouts,
   deterministic PAX tar, gzip; diff_id and blob digest in one pass) straight
   into the blob store;
4. builds the config: the image's, with the ``--change`` instructions applied
   to its ``config`` (:mod:`commit_changes`), ``rootfs.diff_ids`` + the new
   diff_id and a ``history`` entry (``created``, ``author``, ``created_by`` =
   the container's command, ``comment`` = the message).  An empty diff adds
   no layer: the entry says ``empty_layer: true`` (Docker's rule);
5. records the image with :meth:`Images.record_local_image`, which unpacks
   the new layer into the layer store on top of the image's chain (checked
   against its diff_id, exactly as a pulled layer), writes the manifest (OCI
   by default) and tags it.

:func:`plan_commit` computes the same diff_id and config without writing
anything (the layer is only hashed), for check mode and idempotency: a
commit *changes nothing* when the tag already names an image whose config
equals the one the commit would write apart from its creation times
(:func:`same_image`).  Equal configs mean the same base image (its diff_ids
and history are inside), the same diff_id for the container's changes, the
same run configuration after the changes, the same author and message;
only ``created`` (the image's and the new history entry's) is the clock's.

The image config is the *image's* run configuration plus the changes; what
the container was run with (``-e``, a command) is not carried over, unlike
``docker commit``, so that an image does not depend on how one container
happened to be started.
"""

import contextlib
import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .commit_changes import apply_changes
from .errors import BerthError, ContainerError, InvalidArgument, NotFound
from .layerdiff import EMPTY_LAYER_DIFF_ID, DiffStats

DEFAULT_FORMAT = "oci"


@dataclass
class CommitPlan:
    """What a commit would record, found without storing anything.

    ``config`` is the image config the commit would write (its creation times
    are those of the plan); ``before`` the image the target tag names now.
    """

    container_id: str
    container_name: str
    reference: Optional[Any]
    before: Optional[Any]
    before_config: Optional[Dict[str, Any]]
    diff_id: str
    config: Dict[str, Any]
    fmt: str
    stats: DiffStats
    excluded: List[str] = field(default_factory=list)

    @property
    def empty_layer(self) -> bool:
        return self.diff_id == EMPTY_LAYER_DIFF_ID

    @property
    def changed(self) -> bool:
        """False when the tag already names this very commit (same config apart from times, same format)."""
        if self.before is None or self.before_config is None:
            return True
        from .imageformat import MANIFEST_TYPES

        if self.before.manifest_media_type != MANIFEST_TYPES[self.fmt]:
            return True
        return not same_image(self.before_config, self.config)


@dataclass
class CommitResult:
    """The image a commit recorded, and what the tag named before."""

    image: Any
    reference: Optional[Any]
    previous_id: Optional[str]
    diff_id: str
    stats: DiffStats
    excluded: List[str] = field(default_factory=list)

    @property
    def empty_layer(self) -> bool:
        return self.diff_id == EMPTY_LAYER_DIFF_ID

    @property
    def changed(self) -> bool:
        return self.previous_id != self.image.id


# -- the config -----------------------------------------------------------------------------------


def container_command(record: Dict[str, Any], image_config: Dict[str, Any]) -> List[str]:
    """The container's Cmd (Docker's ``created_by`` of a commit): its command, else the image's Cmd."""
    spec = record["spec"]
    if spec.get("command") is not None:
        return list(spec["command"])
    if spec.get("entrypoint") is not None:
        return []
    return list((image_config.get("config") or {}).get("Cmd") or [])


def build_config(
    image_config: Dict[str, Any],
    diff_id: str,
    created: str,
    created_by: str,
    changes: Sequence[str] = (),
    author: str = "",
    message: str = "",
) -> Dict[str, Any]:
    """The committed image's config: *image_config* with the changes, the layer and a history entry."""
    config = copy.deepcopy(image_config)
    config["created"] = created
    if author:
        config["author"] = author
    else:
        config.pop("author", None)
    config["config"] = apply_changes(image_config.get("config"), changes)
    rootfs = dict(config.get("rootfs") or {})
    diff_ids = list(rootfs.get("diff_ids") or [])
    history = [dict(entry) for entry in config.get("history") or []]
    with_layers = sum(1 for entry in history if not entry.get("empty_layer"))
    # A base whose history does not name each layer gets blank entries, so ours maps onto the new layer.
    history.extend({"created_by": ""} for _missing in range(len(diff_ids) - with_layers))
    entry: Dict[str, Any] = {"created": created}
    if author:
        entry["author"] = author
    entry["created_by"] = created_by
    if message:
        entry["comment"] = message
    if diff_id == EMPTY_LAYER_DIFF_ID:
        entry["empty_layer"] = True
    else:
        diff_ids.append(diff_id)
    history.append(entry)
    rootfs.update(type="layers", diff_ids=diff_ids)
    config["rootfs"] = rootfs
    config["history"] = history
    return config


def same_image(existing: Dict[str, Any], candidate: Dict[str, Any]) -> bool:
    """Whether two committed configs are equal apart from their creation times (image and last history entry)."""
    return _timeless(existing) == _timeless(candidate)


def _timeless(config: Dict[str, Any]) -> Dict[str, Any]:
    result = copy.deepcopy(config)
    result.pop("created", None)
    history = result.get("history") or []
    if history and isinstance(history[-1], dict):
        history[-1].pop("created", None)
    return result


# -- reading the container --------------------------------------------------------------------------


class _HashSink:
    """A write-only stream that keeps only the sha256 of what it was given (the diff_id in check mode)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered."""

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


@contextlib.contextmanager
def paused(container: Any, pause: bool = True) -> Iterator[bool]:
    """Freeze a running container's cgroup for the block (yields whether it was frozen)."""
    state = container.observe()
    if not pause or state.get("status") != "running" or not state.get("cgroup"):
        yield False
        return
    from .cgroups import Cgroup

    cgroup = Cgroup.from_dict(state["cgroup"])
    try:
        cgroup.freeze()
    except (BerthError, OSError) as exc:
        with contextlib.suppress(BerthError, OSError):
            cgroup.thaw()
        raise ContainerError(
            f"cannot pause container {container.name} for the commit ({exc}); "
            "commit without pausing (--pause=false / pause: false) to read its changes while it runs"
        ) from None
    try:
        yield True
    finally:
        cgroup.thaw()


def _target(reference: Optional[str]) -> Optional[Any]:
    if not reference:
        return None
    from .reference import parse as parse_reference

    target = parse_reference(reference)
    if target.digest:
        raise InvalidArgument(f"cannot commit to {reference}: name a repository and tag, not a digest")
    return target


def _base(runtime: Any, container: Any) -> Tuple[Any, Dict[str, Any]]:
    """The container's image record and config (the image it was created from, by id)."""
    image_id = container.record["image_id"]
    record = runtime.store.image(image_id)
    if record is None:
        raise NotFound(
            f"the image of container {container.name} ({image_id[7:19]}) is no longer in the store; "
            "it cannot be committed"
        )
    return record, json.loads(runtime.store.read_blob(image_id))


def _excluded(runtime: Any, container: Any) -> List[str]:
    from .commit_paths import mount_points, runtime_entries

    lowers = [runtime.store.layer_diff(chain_id) for chain_id in reversed(container.record["chain_ids"])]
    return runtime_entries(container.path("upper"), lowers, mount_points(container.record))


def _now() -> str:
    from .display import now_rfc3339

    return now_rfc3339()


def _check_format(fmt: str) -> str:
    from .imageformat import check_format

    return check_format(fmt)


# -- plan and commit ------------------------------------------------------------------------------------


def plan_commit(
    runtime: Any,
    container: Any,
    reference: Optional[str] = None,
    message: str = "",
    author: str = "",
    changes: Sequence[str] = (),
    pause: bool = True,
    fmt: str = DEFAULT_FORMAT,
) -> CommitPlan:
    """What :func:`commit` would record now: the layer's diff_id (hashed, not stored) and the config."""
    from .layerdiff import write_layer_tar

    _check_format(fmt)
    target = _target(reference)
    with runtime.locked(container) as fresh:
        image_config = _base(runtime, fresh)[1]
        apply_changes(image_config.get("config"), changes)  # a bad change fails before the container is paused
        with paused(fresh, pause):
            excluded = _excluded(runtime, fresh)
            sink = _HashSink()
            stats = write_layer_tar(fresh.path("upper"), sink, excluded)  # type: ignore[arg-type]
        config = build_config(
            image_config,
            sink.digest,
            _now(),
            " ".join(container_command(fresh.record, image_config)),
            changes,
            author,
            message,
        )
    before = runtime.images.find(str(target)) if target else None
    before_config = runtime.images.config_of(before) if before else None
    return CommitPlan(fresh.id, fresh.name, target, before, before_config, sink.digest, config, fmt, stats, excluded)


def commit(
    runtime: Any,
    container: Any,
    reference: Optional[str] = None,
    message: str = "",
    author: str = "",
    changes: Sequence[str] = (),
    pause: bool = True,
    fmt: str = DEFAULT_FORMAT,
    compression: str = "gzip",
) -> CommitResult:
    """Record the container's changes as a new image, tagged *reference* (``REPOSITORY[:TAG]``) when given."""
    from .layerdiff import write_layer_blob

    _check_format(fmt)
    target = _target(reference)
    store = runtime.store
    store.ensure()
    previous = runtime.images.find(str(target)) if target else None
    with runtime.locked(container) as fresh, store.in_use():
        record, image_config = _base(runtime, fresh)
        apply_changes(image_config.get("config"), changes)
        layers = [(layer["digest"], layer["diff_id"], layer["media_type"]) for layer in record.layers]
        temp = _temporary_blob(store)
        try:
            with paused(fresh, pause):
                excluded = _excluded(runtime, fresh)
                with open(temp, "wb") as out:
                    blob = write_layer_blob(fresh.path("upper"), out, compression, excluded)
                    out.flush()
                    os.fsync(out.fileno())
            if blob.diff_id != EMPTY_LAYER_DIFF_ID:
                _publish_blob(store, temp, blob.digest)
                layers.append((blob.digest, blob.diff_id, blob.media_type))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        config = build_config(
            image_config,
            blob.diff_id,
            _now(),
            " ".join(container_command(fresh.record, image_config)),
            changes,
            author,
            message,
        )
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        image = runtime.images.record_local_image(config_bytes, layers, [str(target)] if target else [], fmt)
    return CommitResult(image, target, previous.id if previous else None, blob.diff_id, blob.stats, excluded)


def _temporary_blob(store: Any) -> str:
    import tempfile

    fd, temp = tempfile.mkstemp(prefix=".commit-", dir=store.blobs)
    os.close(fd)
    return temp


def _publish_blob(store: Any, temp: str, digest: str) -> None:
    """Move the layer written at *temp* into the blob store as *digest* (its digest was computed as written)."""
    from . import fsutil

    with store.blob_lock(digest):
        if store.has_blob(digest):
            return
        os.chmod(temp, 0o600)
        os.replace(temp, store.blob_path(digest))
        fsutil.fsync_dir(store.blobs)
