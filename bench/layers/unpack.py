"""Layer unpack throughput: decompression paths, the applier, and 1 vs 2 layers in parallel.

    .venv/bin/python bench/layers/unpack.py [--runs 3] [--workdir /var/tmp]

Builds (once, cached under WORKDIR/berth-bench-layer-*) a layer of about
130 MB from Python's and Perl's library trees on this host, compressed with
gzip -6 (about 50 MB, like Debian's base layer) and zstd -3, then prints
the best and median MB/s of *uncompressed* tar bytes.  Variants run
round-robin, so load from other processes hits them alike.  Everything that
unpacks ends with the applier's one syncfs; GNU tar gets a ``sync -f`` to
match.  Not a test: numbers on a shared 2-core machine are noisy; compare rows
of one run, and unpack into tmpfs (``--into /dev/shm``) to see CPU costs
rather than the disk.
"""

import argparse
import concurrent.futures
import hashlib
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from typing import Callable, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "plugins", "module_utils"))

from runtime import compression, layers

SOURCES = (
    "/usr/lib/python3.11",
    "/usr/lib/python3/dist-packages",
    "/usr/lib/x86_64-linux-gnu/dri",
    "/usr/lib/x86_64-linux-gnu/valgrind",
)
MB = 1_000_000


def build_layer(workdir: str) -> Dict[str, str]:
    key = hashlib.sha256(repr(SOURCES).encode()).hexdigest()[:10]
    cache = os.path.join(workdir, f"berth-bench-layer-{key}")
    paths = {kind: os.path.join(cache, f"layer.{kind}") for kind in ("tar", "gz", "zst")}
    if all(os.path.exists(path) for path in paths.values()):
        return paths
    tmp = tempfile.mkdtemp(prefix="berth-bench-build-", dir=workdir)
    with tarfile.open(os.path.join(tmp, "layer.tar"), "w", format=tarfile.PAX_FORMAT) as archive:
        for source in SOURCES:
            if os.path.isdir(source):
                archive.add(source, arcname=source.lstrip("/"))
    subprocess.run(["pigz", "-6", "-n", "-k", os.path.join(tmp, "layer.tar")], check=True)
    os.rename(os.path.join(tmp, "layer.tar.gz"), os.path.join(tmp, "layer.gz"))
    subprocess.run(
        ["zstd", "-3", "-q", os.path.join(tmp, "layer.tar"), "-o", os.path.join(tmp, "layer.zst")], check=True
    )
    os.rename(tmp, cache)
    return paths


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def drain(reader: compression._ChunkReader) -> None:
    hashing = compression.HashingReader(reader)  # type: ignore[arg-type]
    try:
        hashing.drain()
    finally:
        reader.close()


def fresh_dir(workdir: str) -> str:
    return tempfile.mkdtemp(prefix="berth-bench-unpack-", dir=workdir)


def unpack_compressed(blob: str, dest: str, helper: bool) -> None:
    layers.apply_compressed(blob, dest, helper=helper)


def unpack_in_child(blob: str, dest: str, helper: bool) -> None:
    layers.apply_compressed(blob, dest, helper=helper)


class Bench:
    """Variants registered first, then run round-robin, so load from other processes hits all alike."""

    def __init__(self, runs: int, tar_size: int) -> None:
        self.runs = runs
        self.tar_size = tar_size
        self.variants: List[Tuple[str, str, Callable[[], List[str]], Callable[[List[str]], object], int]] = []

    def add(
        self,
        group: str,
        label: str,
        prepare: Callable[[], List[str]],
        action: Callable[[List[str]], object],
        layers_n: int = 1,
    ) -> None:
        self.variants.append((group, label, prepare, action, layers_n))

    def run(self) -> None:
        samples: Dict[str, List[float]] = {variant[1]: [] for variant in self.variants}
        for round_no in range(self.runs):
            for _group, label, prepare, action, _count in self.variants:
                dirs = prepare()
                samples[label].append(timed(lambda dirs=dirs, action=action: action(dirs)))
                for path in dirs:
                    shutil.rmtree(path, ignore_errors=True)
            print(f"  round {round_no + 1}/{self.runs} done (load average {os.getloadavg()[0]:.1f})", file=sys.stderr)
        group = None
        print(f"  {'':<54} {'best':>8} {'median':>8}   (MB/s of tar bytes)")
        for variant_group, label, _prepare, _action, layers_n in self.variants:
            if variant_group != group:
                group = variant_group
                print(group)
            best = layers_n * self.tar_size / MB / min(samples[label])
            median = layers_n * self.tar_size / MB / statistics.median(samples[label])
            print(f"  {label:<54} {best:8.0f} {median:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default="/var/tmp", help="where the layer is built and cached")
    parser.add_argument("--into", default=None, help="where layers are unpacked (default: --workdir; try /dev/shm)")
    args = parser.parse_args()
    paths = build_layer(args.workdir)
    tar_size = os.path.getsize(paths["tar"])
    into = args.into or args.workdir
    print(
        f"layer: {tar_size / MB:.0f} MB tar, {os.path.getsize(paths['gz']) / MB:.1f} MB gzip, "
        f"{os.path.getsize(paths['zst']) / MB:.1f} MB zstd; unpacked into {into}; {args.runs} rounds; "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
    )
    bench = Bench(args.runs, tar_size)
    none: Callable[[], List[str]] = list

    def one() -> List[str]:
        return [fresh_dir(into)]

    def two() -> List[str]:
        return [fresh_dir(into), fresh_dir(into)]

    def opener(kind: str) -> Callable[[], compression._ChunkReader]:
        def make() -> compression._ChunkReader:
            handle = open(paths["gz" if kind != "zstd" else "zst"], "rb")  # noqa: SIM115
            if kind == "zlib":
                return compression.GzipReader(handle)
            if kind == "unpigz":
                return compression.ProcessReader([compression.UNPIGZ or "unpigz", "-dc"], handle, "unpigz")
            return compression.ZstdReader(handle)

        return make

    decompress = "decompress + sha256 only"
    for kind, label in (
        ("zlib", "gzip: zlib in process"),
        ("unpigz", "gzip: unpigz helper (as nobody)"),
        ("zstd", "zstd: zstandard in process"),
    ):
        make = opener(kind)
        bench.add(decompress, label, none, lambda _dirs, make=make: drain(make()))

    def apply_plain(dirs: List[str]) -> None:
        with open(paths["tar"], "rb") as handle:
            layers.apply_layer(handle, dirs[0])

    apply = "apply into a fresh directory (ends with one syncfs)"
    bench.add(apply, "applier alone (plain tar from the page cache)", one, apply_plain)
    bench.add(apply, "gzip, zlib in process + applier", one, lambda d: unpack_compressed(paths["gz"], d[0], False))
    bench.add(apply, "gzip, unpigz + applier (the default)", one, lambda d: unpack_compressed(paths["gz"], d[0], True))
    bench.add(apply, "zstd, zstandard + applier", one, lambda d: unpack_compressed(paths["zst"], d[0], False))
    bench.add(
        apply,
        "GNU tar -xzf + sync -f (reference)",
        one,
        lambda d: (
            subprocess.run(["tar", "-xzf", paths["gz"], "-C", d[0], "--numeric-owner"], check=True),
            subprocess.run(["sync", "-f", d[0]], check=True),
        ),
    )

    parallel = "two layers at once (aggregate)"
    for helper in (True, False):
        name = "unpigz" if helper else "zlib"

        def threads(dirs: List[str], helper: bool = helper) -> None:
            workers = [threading.Thread(target=unpack_compressed, args=(paths["gz"], d, helper)) for d in dirs]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

        def processes(dirs: List[str], helper: bool = helper) -> None:
            context = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
                list(pool.map(unpack_in_child, [paths["gz"]] * 2, dirs, [helper] * 2))

        bench.add(parallel, f"gzip, {name}: 2 layers in 2 threads", two, threads, 2)
        bench.add(parallel, f"gzip, {name}: 2 layers in 2 processes", two, processes, 2)
    bench.run()

    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def isolated_noop(dest: str) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if libc.unshare(0x00020000) != 0:
                    code = 1
                os.chroot(dest)
                os.chdir("/")
            except BaseException:
                code = 2
            os._exit(code)
        status = os.waitpid(pid, 0)[1]
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("isolated child failed")

    samples = []
    for _sample in range(20):
        dest = fresh_dir(into)
        samples.append(timed(lambda dest=dest: isolated_noop(dest)))
        shutil.rmtree(dest)
    cost = statistics.median(samples) * 1000
    print(f"isolation cost per layer: fork + unshare(CLONE_NEWNS) + chroot + exit = {cost:.1f} ms")


if __name__ == "__main__":
    main()
