"""Pulling into the store, proven against the real registry and independent tools.

* The root file system a container gets -- the image's layers mounted as
  overlayfs -- is identical to what ``umoci unpack`` makes of the same image.
* A pull killed at random moments leaves nothing corrupt: the next pull
  succeeds and ``store verify --deep`` finds every blob and layer intact.
* A registry that serves wrong bytes, truncated blobs or resets mid-blob is
  retried or refused with a clear error, and nothing corrupt is recorded.
* Concurrent pulls of the same and overlapping images are safe and fetch and
  unpack each blob and layer once; a second image on the same base reuses it.
* ``rmi`` counts references: a shared base stays while another image uses it,
  and an image a container uses is refused.
"""

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future
from typing import Callable, Iterator, List, Tuple

import pytest
from support import images, pusher
from support.berth_env import BERTH, BerthEnv
from support.faults import FaultProxy
from support.registry import Registry
from support.trees import TESTS_DIR, compare, overlay_snapshot, snapshot

from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import IntegrityError, RegistryError
from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images, _BlobStream
from ansible_collections.berth.containers.plugins.module_utils.runtime.store import chain_ids


@pytest.fixture(scope="module")
def library(
    registry: Registry, push_image: Callable[..., pusher.PushResult], busybox_layout, debian_layout, nginx_layout
) -> Registry:
    """The plain registry with library/busybox, library/debian and library/nginx (a docker.io mirror)."""
    for layout in (busybox_layout, debian_layout, nginx_layout):
        push_image(registry, layout)
    return registry


@pytest.fixture
def env(library: Registry) -> Iterator[BerthEnv]:
    berth = BerthEnv(mirrors=[library.url])
    yield berth
    assert berth.destroy() == []


def umoci_rootfs(umoci: str, layout: images.FixtureImages, work: str) -> str:
    bundle = os.path.join(work, "bundle")
    subprocess.run([umoci, "unpack", "--image", layout.ref("latest"), bundle], check=True, capture_output=True)
    return os.path.join(bundle, "rootfs")


@pytest.mark.parametrize("name", ["busybox", "nginx"])
def test_overlay_of_the_pulled_layers_is_the_tree_umoci_unpacks(
    env: BerthEnv, umoci: str, name: str, request: pytest.FixtureRequest
) -> None:
    layout: images.FixtureImages = request.getfixturevalue(f"{name}_layout")
    store_images = Images(env.config())
    record = store_images.pull(name).image
    assert record.id == layout.image().config_digest
    lowers = [store_images.store.layer_diff(chain_id) for chain_id in reversed(record.chain_ids)]
    merged = overlay_snapshot(lowers)
    work = tempfile.mkdtemp(prefix="berth-umoci-", dir="/var/tmp")
    try:
        expected = snapshot(umoci_rootfs(umoci, layout, work))
    finally:
        shutil.rmtree(work)
    assert len(merged) > (1000 if name == "nginx" else 300)
    assert compare(merged, expected) == []
    if name == "busybox":
        assert any(entry.get("hardlink") for entry in merged.values()), "the hard link pair must be seen as one inode"
        assert any("xattrs" in entry for entry in merged.values())


# -- killed pulls ----------------------------------------------------------------------------------


def verify(env: BerthEnv, *flags: str) -> List[str]:
    """The problems ``berth store verify`` reports (it must say "intact" when there are none)."""
    result = env.berth("store", "verify", *flags, check=False)
    problems = result.stdout.splitlines()
    if result.returncode == 0:
        assert len(problems) == 1, result
        assert " is intact " in problems[0], result
        return []
    assert problems, f"verify failed without naming a problem: {result.stderr}"
    assert result.stderr.endswith(f"problem(s) found in {env.settings['data-root']}\n"), result.stderr
    return problems


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_the_store(env: BerthEnv) -> None:
    """Ten pulls of nginx killed at random moments; each time the next pull completes and the store verifies."""
    rng = random.Random(int(os.environ.get("BERTH_KILL_SEED", "20261128")))
    start = time.perf_counter()
    env.berth("pull", "nginx")
    cold = time.perf_counter() - start
    moments = []
    for _run in range(10):
        env.berth("rmi", "nginx")
        assert env.berth("images", "-q").stdout == ""
        delay = rng.uniform(0.02, cold)
        killed = subprocess.Popen(
            [BERTH, "pull", "nginx"],
            env=env.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(killed.pid, signal.SIGKILL)  # the pull and its decompressor helpers: a group we started
        killed.wait()
        moments.append(round(delay, 2))
        leftovers = verify(env)
        assert all(line.startswith("unfinished unpack left at") for line in leftovers), (delay, leftovers)
        env.berth("pull", "nginx")
        assert verify(env) == [], f"after a kill at {delay:.2f}s"
    assert verify(env, "--deep") == []
    layers_dir = os.path.join(env.settings["data-root"], "layers")
    assert not [name for name in os.listdir(layers_dir) if name.startswith("tmp-")]
    assert len(moments) == 10, moments


# -- a faulty registry ----------------------------------------------------------------------------------


@pytest.fixture
def faulty(library: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(library.url) as proxy:
        yield proxy


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without the back-off sleeps (the retry logic itself is unchanged)."""
    from ansible_collections.berth.containers.plugins.module_utils.runtime import registry as registry_module

    monkeypatch.setattr(registry_module.RegistryClient, "_sleep", lambda self, attempt: None)


def busybox_blob(busybox_layout: images.FixtureImages, index: int = 0) -> str:
    return busybox_layout.image().layers[index].digest


def test_a_download_that_failed_before_its_stream_opened_is_the_error_reported(env: BerthEnv, busybox_layout) -> None:
    """The race CI met: the download fails and removes its ``.partial`` between the unpacker seeing bytes
    arrive and opening the file; the download's error must win over "cannot open layer blob"."""
    layer = busybox_layout.image().layers[0]
    store_images = Images(env.config())
    store_images.store.ensure()
    stream = _BlobStream(store_images.store.blob_path(layer.digest) + ".partial", layer.size)
    stream.advanced(1)
    failed: Future = Future()
    failed.set_exception(IntegrityError(f"blob {layer.digest} does not match its digest"))
    with pytest.raises(IntegrityError, match="does not match its digest"):
        store_images._unpack(layer, layer.diff_id, [layer.diff_id], 0, lambda *args: None, stream, failed)
    assert store_images.store.layer(layer.diff_id) is None


@pytest.mark.usefixtures("fast_retries")
def test_wrong_bytes_are_refused_and_nothing_is_recorded(env: BerthEnv, faulty: FaultProxy, busybox_layout) -> None:
    digest = busybox_blob(busybox_layout)
    faulty.wrong_body(f"/blobs/{digest}")
    store_images = Images(env.config())
    with pytest.raises(IntegrityError, match=f"blob {digest}.*does not match its digest"):
        store_images.pull(f"{faulty.host}/library/busybox")
    assert store_images.list() == []
    assert not store_images.store.has_blob(digest)
    assert verify(env) == []


@pytest.mark.usefixtures("fast_retries")
def test_a_blob_truncated_once_is_resumed_and_always_truncated_is_refused(
    env: BerthEnv, faulty: FaultProxy, busybox_layout
) -> None:
    digest = busybox_blob(busybox_layout)
    store_images = Images(env.config())
    faulty.truncate(f"/blobs/{digest}", keep=1000, times=1)
    record = store_images.pull(f"{faulty.host}/library/busybox").image
    assert record.id == busybox_layout.image().config_digest
    ranges = [r.headers.get("Range") for r in faulty.requests if r.path.endswith(digest)]
    assert ranges == [None, "bytes=1000-"], ranges
    assert verify(env, "--deep") == []

    faulty.clear()
    store_images.remove(f"{faulty.host}/library/busybox", lambda image_id: [])
    faulty.truncate(f"/blobs/{digest}", keep=1000, times=None)
    with pytest.raises(RegistryError, match=f"download of blob {digest}.*failed after 5 attempts"):
        store_images.pull(f"{faulty.host}/library/busybox")
    assert store_images.list() == []
    assert verify(env) == []


@pytest.mark.usefixtures("fast_retries")
def test_a_reset_mid_blob_resumes_with_range(env: BerthEnv, faulty: FaultProxy, nginx_layout) -> None:
    base = nginx_layout.image().layers[0].digest
    faulty.reset_after(f"/blobs/{base}", nbytes=5_000_000, times=1)
    record = Images(env.config()).pull(f"{faulty.host}/library/nginx").image
    assert record.id == nginx_layout.image().config_digest
    ranges = [r.headers.get("Range") for r in faulty.requests if r.path.endswith(base)]
    assert len(ranges) == 2, ranges
    assert ranges[0] is None
    assert ranges[1].startswith("bytes=")
    assert int(ranges[1][6:-1]) > 0
    assert verify(env, "--deep") == []


# -- concurrency and sharing ------------------------------------------------------------------------------

# Progress comes from the download and unpack threads at once: one os.write per line (atomic on a
# pipe), since print() writes the text and its newline separately and two threads' lines could merge.
PULL_AND_REPORT = """
import os
import sys
sys.path.insert(0, {tests!r})
import conftest
from ansible_collections.berth.containers.plugins.module_utils.runtime import config
from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images, _BlobStream

def report(event, subject, current, total):
    if event in ("downloaded", "extracting", "exists", "complete"):
        os.write(1, f"{{event}} {{subject}}\\n".encode())

Images(config.load({config!r})).pull(sys.argv[1], progress=report)
"""


def pull_in_processes(env: BerthEnv, names: List[str]) -> List[List[str]]:
    """Pull *names* at the same time, one process each; return each one's progress events."""
    script = PULL_AND_REPORT.format(tests=TESTS_DIR, config=env.config_path)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in names
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        outputs.append(out.splitlines())
    return outputs


def test_concurrent_pulls_fetch_and_unpack_each_blob_and_layer_once(
    env: BerthEnv, faulty: FaultProxy, debian_layout, nginx_layout, busybox_layout
) -> None:
    names = [f"{faulty.host}/library/{name}" for name in ("nginx", "debian", "nginx", "busybox")]
    outputs = pull_in_processes(env, names)
    events = [line for output in outputs for line in output]
    extracted = [line.split()[1] for line in events if line.startswith("extracting")]
    assert sorted(extracted) == sorted(set(extracted)), "a layer was unpacked twice"
    nginx_layers = nginx_layout.image().layers
    expected = {layer.digest for layer in nginx_layers} | {layer.digest for layer in busybox_layout.image().layers}
    assert set(extracted) == expected
    blob_gets = [r.path for r in faulty.requests if r.method == "GET" and "/blobs/" in r.path]
    layer_gets = [path.rsplit("/", 1)[1] for path in blob_gets if path.rsplit("/", 1)[1] in expected]
    assert sorted(layer_gets) == sorted(expected), "each layer blob is downloaded once"
    store_images = Images(env.config())
    assert len(store_images.list()) == 3
    assert verify(env, "--deep") == []


def test_a_second_image_on_the_same_base_reuses_its_layer(env: BerthEnv, faulty: FaultProxy, nginx_layout) -> None:
    base = nginx_layout.image().layers[0].digest
    store_images = Images(env.config())
    store_images.pull(f"{faulty.host}/library/debian")
    events: List[Tuple[str, str]] = []
    result = store_images.pull(
        f"{faulty.host}/library/nginx", progress=lambda event, subject, *_: events.append((event, subject))
    )
    assert ("exists", base) in events
    assert [subject for event, subject in events if event == "extracting"] == [nginx_layout.image().layers[1].digest]
    assert (result.downloaded_layers, result.unpacked_layers) == (1, 1)
    assert sum(1 for r in faulty.requests if r.method == "GET" and r.path.endswith(base)) == 1


def test_a_layer_unpacks_while_the_one_below_is_still_unpacking(
    env: BerthEnv, faulty: FaultProxy, busybox_layout
) -> None:
    """The base layer's blob arrives late; the layers above start and finish only after it is published."""
    layers = [layer.digest for layer in busybox_layout.image().layers]
    faulty.delay(f"/blobs/{layers[0]}", seconds=1.0, times=1)
    events: List[Tuple[str, str]] = []
    store_images = Images(env.config())
    store_images.pull(
        f"{faulty.host}/library/busybox", progress=lambda event, subject, *_: events.append((event, subject))
    )
    position = {event: events.index(event) for event in events}
    assert position[("extracting", layers[1])] < position[("complete", layers[0])], events
    assert position[("complete", layers[0])] < position[("complete", layers[1])] < position[("complete", layers[2])]
    assert verify(env, "--deep") == []  # every layer complete, with the diff_id its image names


@pytest.mark.usefixtures("fast_retries")
def test_a_failing_middle_layer_is_the_error_reported_and_nothing_above_is_kept(
    env: BerthEnv, faulty: FaultProxy, busybox_layout
) -> None:
    layers = [layer.digest for layer in busybox_layout.image().layers]
    faulty.delay(f"/blobs/{layers[0]}", seconds=0.5, times=1)
    faulty.wrong_body(f"/blobs/{layers[1]}")
    store_images = Images(env.config())
    with pytest.raises(IntegrityError, match=f"blob {layers[1]}.*does not match its digest"):
        store_images.pull(f"{faulty.host}/library/busybox")
    chains = chain_ids(busybox_layout.image().diff_ids)
    assert store_images.store.layer(chains[1]) is None
    assert store_images.store.layer(chains[2]) is None
    assert store_images.list() == []
    assert verify(env) == []


# -- rmi --------------------------------------------------------------------------------------------------


def test_rmi_keeps_a_shared_base_until_its_last_image_goes(env: BerthEnv, nginx_layout) -> None:
    base_chain = nginx_layout.image().diff_ids[0]
    env.berth("pull", "debian")
    env.berth("pull", "nginx")
    store = Images(env.config()).store
    nginx_top = Images(env.config()).get("nginx").top_chain_id
    out = env.berth("rmi", "nginx").stdout
    assert f"Deleted: {nginx_layout.image().config_digest}" in out
    assert store.layer(nginx_top) is None, "the nginx layer goes with its last image"
    assert store.layer(base_chain) is not None, "debian still uses the base"
    assert verify(env, "--deep") == []
    env.berth("rmi", "debian")
    assert store.layer(base_chain) is None
    assert os.listdir(store.blobs) == []
    assert [name for name in os.listdir(store.layers) if name != "l"] == []


def test_rmi_of_an_image_a_container_uses_is_refused(env: BerthEnv) -> None:
    env.berth("pull", "busybox")
    name = f"uses-{env.token}"
    env.berth("create", "--name", name, "busybox", "true")
    refused = env.berth("rmi", "busybox", check=False)
    assert refused.returncode == 1
    assert f"is used by container(s) {name}: remove them first" in refused.stderr
    assert env.berth("images", "-q").stdout.strip() != ""
    env.berth("rm", name)
    assert "Deleted:" in env.berth("rmi", "busybox").stdout
