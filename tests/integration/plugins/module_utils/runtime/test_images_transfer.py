"""push, save, load and record_local_image, proven against the real registry and tools no one here wrote.

* An image berth pushes is pulled by ``skopeo copy`` and unpacked by ``umoci
  unpack`` to the same file tree berth shows (its overlay of the layers).
* Pushing again sends no blob (HEAD finds them); another repository of the
  same registry gets the layers by cross-repository mount; the manifest keeps
  its digest in its own format and converts to the other on request.
* ``load`` accepts archives written by ``skopeo copy ... oci-archive:`` and
  ``docker-archive:``, and ``save`` -> ``load`` round-trips several images.
* A damaged archive is refused and nothing is recorded.
"""

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from typing import Iterator

import pytest
from support import images
from support.berth_env import BerthEnv
from support.faults import FaultProxy
from support.registry import Registry
from support.trees import compare, overlay_snapshot, snapshot

from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import IntegrityError
from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images


@pytest.fixture(scope="module")
def library(registry: Registry, push_image, busybox_layout, nginx_layout) -> Registry:
    push_image(registry, busybox_layout)
    push_image(registry, nginx_layout)
    return registry


@pytest.fixture
def env(library: Registry) -> Iterator[BerthEnv]:
    berth = BerthEnv(mirrors=[library.url])
    yield berth
    assert berth.destroy() == []


@pytest.fixture
def work() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="berth-transfer-", dir="/var/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def berth_tree(store_images: Images, name: str):
    record = store_images.get(name)
    return overlay_snapshot([store_images.store.layer_diff(chain) for chain in reversed(record.chain_ids)])


def test_pushed_image_is_pulled_by_skopeo_and_unpacked_by_umoci_to_the_same_tree(
    env: BerthEnv, library: Registry, work: str, skopeo: str, umoci: str
) -> None:
    store_images = Images(env.config())
    pulled = store_images.pull("busybox").image
    target = f"{library.host}/team-{uuid.uuid4().hex[:8]}/busybox:v1"
    with FaultProxy(library.url) as proxy:
        proxied = target.replace(library.host, proxy.host)
        result = store_images.push("busybox", proxied)
        assert result.digest == pulled.manifest, "pushed in its own format, the manifest is the one pulled"
        assert sorted(result.uploaded) == sorted([*(layer["digest"] for layer in pulled.layers), pulled.id])
        heads = [r for r in proxy.requests if r.method == "HEAD" and "/blobs/" in r.path]
        assert len(heads) == len(pulled.layers) + 1

        proxy.requests.clear()
        again = store_images.push("busybox", proxied)
        assert again.digest == result.digest
        assert again.uploaded == []
        assert again.mounted == []
        assert not [r for r in proxy.requests if r.method in ("POST", "PATCH") and "/blobs/uploads/" in r.path]

    layout = os.path.join(work, "layout")
    subprocess.run(
        [skopeo, "copy", "--quiet", "--src-tls-verify=false", f"docker://{target}", f"oci:{layout}:v1"],
        check=True,
        capture_output=True,
    )
    subprocess.run([umoci, "unpack", "--image", f"{layout}:v1", f"{work}/bundle"], check=True, capture_output=True)
    assert compare(berth_tree(store_images, "busybox"), snapshot(f"{work}/bundle/rootfs")) == []


def test_push_to_another_repository_mounts_and_converts_the_format(env: BerthEnv, library: Registry) -> None:
    store_images = Images(env.config())
    source = f"{library.host}/library/nginx:latest"
    pulled = store_images.pull(source).image
    assert pulled.manifest_media_type == "application/vnd.oci.image.manifest.v1+json"
    target = f"{library.host}/copies-{uuid.uuid4().hex[:8]}/nginx:v2"
    result = store_images.push(source, target, fmt="docker")
    assert sorted(result.mounted) == sorted([*(layer["digest"] for layer in pulled.layers), pulled.id])
    assert result.uploaded == []
    assert result.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert result.digest != pulled.manifest
    fresh = BerthEnv()
    try:
        again = Images(fresh.config()).pull(target).image
        assert again.id == pulled.id, "the same config: the same image id in either format"
        assert again.manifest == result.digest
        assert [layer["media_type"] for layer in again.layers] == [
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ] * len(pulled.layers)
        assert Images(fresh.config()).store.verify(deep=True) == []
    finally:
        fresh.destroy()


def test_registry_tag_digest_follows_pushes(env: BerthEnv, library: Registry) -> None:
    from ansible_collections.berth.containers.plugins.module_utils.runtime.images import RegistryOptions

    store_images = Images(env.config())
    store_images.pull("busybox")
    target = f"{library.host}/digest-{uuid.uuid4().hex[:8]}/busybox:v1"
    assert store_images.registry_tag_digest(target, RegistryOptions()) is None
    _reference, body, _media_type = store_images.push_plan("busybox", target, "docker")
    pushed = store_images.push("busybox", target, fmt="docker")
    assert store_images.registry_tag_digest(target, RegistryOptions()) == pushed.digest
    import hashlib

    assert pushed.digest == "sha256:" + hashlib.sha256(body).hexdigest(), "push_plan predicts the manifest"


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_load_accepts_archives_made_by_skopeo(
    env: BerthEnv, work: str, skopeo: str, transport: str, nginx_layout: images.FixtureImages
) -> None:
    archive = os.path.join(work, f"nginx-{transport}.tar")
    subprocess.run(
        [
            skopeo,
            "copy",
            "--quiet",
            f"oci:{nginx_layout.ref('latest')}",
            f"{transport}:{archive}:example.org/web/nginx:1.0",
        ],
        check=True,
        capture_output=True,
    )
    store_images = Images(env.config())
    loaded = store_images.load(archive)
    assert len(loaded) == 1
    record, names = loaded[0]
    assert record.id == nginx_layout.image().config_digest
    assert names == ["example.org/web/nginx:1.0"]
    assert store_images.find("example.org/web/nginx:1.0").id == record.id
    assert store_images.store.verify(deep=True) == []
    pulled_env = BerthEnv(mirrors=env.settings["registry-mirrors"])
    try:
        reference = Images(pulled_env.config())
        reference.pull("nginx")
        assert compare(berth_tree(store_images, record.id), berth_tree(reference, "nginx")) == []
    finally:
        pulled_env.destroy()


def test_save_then_load_round_trips_several_images(env: BerthEnv, work: str, umoci: str) -> None:
    source = Images(env.config())
    busybox = source.pull("busybox").image
    nginx = source.pull("nginx").image
    source.tag("busybox", "example.org/tools/busybox:stable")
    archive = os.path.join(work, "images.tar")
    with open(archive, "wb") as out:
        written = source.save(["busybox", "nginx", "example.org/tools/busybox:stable"], out)
    assert written == [
        "docker.io/library/busybox:latest",
        "docker.io/library/nginx:latest",
        "example.org/tools/busybox:stable",
    ]
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        names = [entry["annotations"]["io.containerd.image.name"] for entry in index["manifests"]]
        assert sorted(names) == sorted(written)
    layout = os.path.join(work, "layout")
    os.makedirs(layout)
    with tarfile.open(archive) as tar:
        tar.extractall(layout)
    subprocess.run([umoci, "unpack", "--image", f"{layout}:stable", f"{work}/bundle"], check=True, capture_output=True)
    assert compare(berth_tree(source, "busybox"), snapshot(f"{work}/bundle/rootfs")) == []

    target_env = BerthEnv()
    try:
        target = Images(target_env.config())
        loaded = target.load(archive)
        assert sorted((record.id, tuple(names)) for record, names in loaded) == sorted(
            [
                (busybox.id, ("docker.io/library/busybox:latest", "example.org/tools/busybox:stable")),
                (nginx.id, ("docker.io/library/nginx:latest",)),
            ]
        )
        assert target.get("nginx").manifest == nginx.manifest, "the pulled manifest travels unchanged"
        assert target.store.verify(deep=True) == []
        assert compare(berth_tree(target, "nginx"), berth_tree(source, "nginx")) == []
    finally:
        target_env.destroy()


def test_a_damaged_archive_is_refused_and_nothing_is_recorded(env: BerthEnv, work: str) -> None:
    source = Images(env.config())
    record = source.pull("busybox").image
    archive = os.path.join(work, "busybox.tar")
    with open(archive, "wb") as out:
        source.save(["busybox"], out)
    layer = record.layers[0]["digest"]
    damaged = os.path.join(work, "damaged.tar")
    with tarfile.open(archive) as original, tarfile.open(damaged, "w") as copy:
        for member in original.getmembers():
            data = original.extractfile(member).read() if member.isfile() else None
            if member.name == f"blobs/sha256/{layer[7:]}":
                data = bytes([data[0] ^ 1]) + data[1:]
            copy.addfile(member, None if data is None else __import__("io").BytesIO(data))
    target_env = BerthEnv()
    try:
        target = Images(target_env.config())
        with pytest.raises(IntegrityError, match=f"blob {layer} does not match"):
            target.load(damaged)
        assert target.list() == []
        assert not target.store.has_blob(layer)
    finally:
        target_env.destroy()


def test_record_local_image_for_commit(env: BerthEnv, work: str) -> None:
    """The store-level call commit uses: a new top layer over a pulled image becomes a tagged image."""
    from support import oci

    store_images = Images(env.config())
    base = store_images.pull("busybox").image
    tar = oci.tar_bytes([oci.file("etc/committed", "hello\n"), oci.whiteout("etc/motd")])
    blob = os.path.join(work, "layer.tar.gz")
    with open(blob, "wb") as handle:
        handle.write(oci.compress(tar, "gzip"))
    diff_id = oci.sha256_digest(tar)
    config = json.loads(store_images.store.read_blob(base.id))
    config["rootfs"]["diff_ids"].append(diff_id)
    config["history"].append({"created_by": "berth commit", "comment": "custom"})
    config_bytes = json.dumps(config).encode()
    layers = [(layer["digest"], layer["diff_id"], layer["media_type"]) for layer in base.layers]
    layers.append((blob, diff_id, "application/vnd.oci.image.layer.v1.tar+gzip"))
    record = store_images.record_local_image(config_bytes, layers, ["example.org/mine:v1"])
    assert record.chain_ids[:-1] == base.chain_ids
    assert store_images.find("example.org/mine:v1").id == record.id
    tree = berth_tree(store_images, "example.org/mine:v1")
    assert "etc/committed" in tree
    assert "etc/motd" not in tree
    assert store_images.history("example.org/mine:v1")[0]["comment"] == "custom"
    assert store_images.store.verify(deep=True) == []


def test_push_to_another_registry_uploads_large_layers_in_chunks(env: BerthEnv, make_registry, nginx_layout) -> None:
    other = make_registry("plain")
    store_images = Images(env.config())
    pulled = store_images.pull("nginx").image
    sizes = {layer["digest"]: layer["size"] for layer in pulled.layers}
    assert max(sizes.values()) > 32 * 1024 * 1024, "the Debian layer is larger than one monolithic upload"
    with FaultProxy(other.url) as proxy:
        result = store_images.push("nginx", f"{proxy.host}/library/nginx:latest")
        patches = [r for r in proxy.requests if r.method == "PATCH"]
    big = max(sizes, key=sizes.get)
    assert sorted(result.uploaded) == sorted([*sizes, pulled.id])
    assert len(patches) == 2, "48 MB in 32 MB chunks"
    assert patches[0].headers.get("Content-Range", "").startswith("0-")
    fresh = BerthEnv()
    try:
        again = Images(fresh.config()).pull(f"{other.host}/library/nginx:latest").image
        assert again.id == pulled.id
        assert again.manifest == pulled.manifest
        assert big in [layer["digest"] for layer in again.layers]
        assert Images(fresh.config()).store.verify(deep=True) == []
    finally:
        fresh.destroy()


def test_docker_pulls_and_runs_what_berth_pushed(env: BerthEnv, library: Registry) -> None:
    from support.dockerd import dockerd

    store_images = Images(env.config())
    store_images.pull("busybox")
    targets = {fmt: f"{library.host}/pushed-{uuid.uuid4().hex[:8]}/busybox:{fmt}" for fmt in ("oci", "docker")}
    for fmt, target in targets.items():
        store_images.push("busybox", target, fmt=fmt)
    with dockerd({"insecure-registries": [library.host]}) as daemon:
        cli = ["/usr/bin/docker", "-H", daemon.docker_host]
        for target in targets.values():
            subprocess.run([*cli, "pull", "-q", target], check=True, capture_output=True, timeout=120)
            inspected = json.loads(subprocess.check_output([*cli, "image", "inspect", target]))
            assert inspected[0]["Id"] == store_images.get("busybox").id
            ran = subprocess.run(
                [*cli, "run", "--rm", "--network", "none", target, "cat", "/etc/motd"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert ran.returncode == 0, ran.stderr
            assert ran.stdout == images.BUSYBOX_EXPECTED["etc/motd"].data.decode()


def test_podman_pulls_and_runs_what_berth_pushed(env: BerthEnv, library: Registry, podman) -> None:
    store_images = Images(env.config())
    store_images.pull("busybox")
    image_id = store_images.get("busybox").id
    for fmt in ("oci", "docker"):
        target = f"{library.host}/pushed-{uuid.uuid4().hex[:8]}/busybox:{fmt}"
        store_images.push("busybox", target, fmt=fmt)
        podman("pull", "-q", "--tls-verify=false", target)
        assert podman("image", "inspect", "--format", "{{.Id}}", target).stdout.strip() == image_id.split(":")[1]
        ran = podman("run", "--rm", "--network", "none", target, "cat", "/etc/motd", check=False)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == images.BUSYBOX_EXPECTED["etc/motd"].data.decode()
