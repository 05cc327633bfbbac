"""The hostile-layer corpus: every case is refused or contained, and nothing outside the layer changes.

Needs root: whiteouts are ``mknod`` character devices, cases chown to other
ids and read ``trusted.*`` xattrs.  Cases carry the names of containerd's
``TestBreakouts`` (pkg/archive/tar_test.go) where they come from there
(RUNTIME-REFERENCE §3.4 E1-E15), then umoci CVE-2021-29136, the CPython
``tarfile`` bypass payloads, and our own.

For every case a scratch directory holds, next to the layer directory, a
fake host tree (``host/etc/passwd``, a 0400 file...) that the tars' symlinks
and hardlinks aim at, and a sentinel tree.  Both are snapshotted (content,
type, mode, owner, xattrs) before and after and must be identical; a file
named uniquely in the real ``/etc`` and ``/tmp`` must not appear.  Each case
runs twice: with ``openat2`` and with the component-by-component fallback.
"""

import os
import stat
import tarfile
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional

import pytest
from support.layertar import END_OF_ARCHIVE, TarBuilder, pax_header, snapshot, ustar_member

from ansible_collections.berth.containers.plugins.module_utils.runtime import layers
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import LayerError

MARKER = f"berth-breakout-{uuid.uuid4().hex[:12]}"


@dataclass
class Env:
    base: str
    dest: str
    host: str

    def path(self, relative: str) -> str:
        return os.path.join(self.dest, relative)

    def read(self, relative: str) -> bytes:
        with open(self.path(relative), "rb") as handle:
            return handle.read()


@dataclass
class Case:
    name: str
    tar: Callable[[Env], bytes]
    refused: Optional[str] = None  # regex the LayerError message must match
    check: Optional[Callable[[Env], None]] = None
    prepare: Optional[Callable[[Env], None]] = None
    allow_devices: bool = True


def t() -> TarBuilder:
    return TarBuilder()


def same_file(env: Env, first: str, second: str) -> None:
    assert os.lstat(env.path(first)).st_ino == os.lstat(env.path(second)).st_ino


def is_whiteout(env: Env, relative: str) -> None:
    st = os.lstat(env.path(relative))
    assert stat.S_ISCHR(st.st_mode)
    assert st.st_rdev == 0


def prepare_etc(env: Env) -> None:
    os.makedirs(env.path("etc"))
    with open(env.path("etc/passwd"), "wb") as handle:
        handle.write(b"all users")


def prepare_symlink(name: str, target: str) -> Callable[[Env], None]:
    def prepare(env: Env) -> None:
        prepare_etc(env)
        os.symlink(target.replace("HOST", env.host), env.path(name))

    return prepare


def long_path_payload(env: Env) -> bytes:
    """CPython gh-135034 / CVE-2025-4517: a symlink chain whose realpath exceeds PATH_MAX."""
    tar = t()
    component = "d" * 247
    steps = "abcdefghijklmnop"
    path = ""
    for step in steps:
        tar.dir(os.path.join(path, component))
        tar.symlink(os.path.join(path, step), component)
        path = os.path.join(path, step)
    link_path = os.path.join("/".join(steps), "l" * 254)
    tar.symlink(link_path, "../" * len(steps))
    tar.symlink("escape", f"{link_path}/../../../../../../../..{env.host}")
    tar.file("escape/etc/passwd", b"owned")
    return tar.tobytes()


def gnu_long_name(name: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 1
    tar = TarBuilder(fmt=tarfile.GNU_FORMAT)
    tar.raw(info, b"x")
    return tar.tobytes()


def raw_member(records: dict, name: str = "innocent", data: bytes = b"x", kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    return pax_header(records) + ustar_member(info, data if kind == tarfile.REGTYPE else b"") + END_OF_ARCHIVE


def expect(condition: bool, message: str) -> None:
    assert condition, message


CASES: List[Case] = [
    # --- E1, E2, E3: symlink parents (containerd semantics would resolve them in-root; we refuse) ---
    Case(
        "SymlinkAbsolute",
        lambda e: t().dir("etc").symlink("localetc", "/etc").file(f"/localetc/{MARKER}", b"unbroken").tobytes(),
        refused="'localetc'.*symlink",
    ),
    Case(
        "SymlinkAbsoluteToTheHostTree",
        lambda e: t().symlink("localetc", f"{e.host}/etc").file("localetc/passwd", b"owned").tobytes(),
        refused="symlink",
    ),
    Case(
        "SymlinkUpAndOut",
        lambda e: (
            t()
            .dir("etc")
            .dir("dummy")
            .symlink("localetc", "/dummy/../etc")
            .file("/localetc/unbroken", b"unbroken")
            .tobytes()
        ),
        refused="symlink",
    ),
    Case(
        "SymlinkMultipleAbsolute",
        lambda e: (
            t()
            .dir("etc")
            .dir("dummy")
            .symlink("/dummy/etc", "/etc")
            .symlink("localetc", "/dummy/etc")
            .file("/dummy/etc/unbroken", b"unbroken")
            .tobytes()
        ),
        refused="symlink",
    ),
    Case(
        "SymlinkMultipleRelative",
        lambda e: (
            t()
            .dir("etc")
            .dir("dummy")
            .symlink("/dummy/etc", "/etc")
            .symlink("localetc", "./dummy/etc")
            .file("/dummy/etc/unbroken", b"unbroken")
            .tobytes()
        ),
        refused="symlink",
    ),
    Case(
        "SymlinkEmptyFile",
        lambda e: (
            t()
            .dir("etc")
            .file("etc/emptied", b"notempty")
            .symlink("localetc", "/etc")
            .file("/localetc/emptied", b"")
            .tobytes()
        ),
        refused="symlink",
        check=lambda e: expect(e.read("etc/emptied") == b"notempty", "etc/emptied was truncated"),
    ),
    # --- E4, E5: hardlink targets ---
    Case(
        "HardlinkRelative",
        lambda e: (
            t()
            .dir("etc", mode=0o770)
            .file("/etc/passwd", b"inside")
            .dir("breakouts")
            .symlink("breakouts/d1", "../../etc")
            .link("breakouts/mypasswd", "/breakouts/d1/passwd")
            .tobytes()
        ),
        refused="not a file created earlier",
    ),
    Case(
        "HardlinkDownAndOut",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .dir("breakouts")
            .dir("downandout")
            .symlink("breakouts/d1", "../downandout/../../etc")
            .link("breakouts/mypasswd", "/breakouts/d1/passwd")
            .tobytes()
        ),
        refused="not a file created earlier",
    ),
    Case(
        "HardlinkAbsolute",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .symlink("localetc", "/etc")
            .link("localpasswd", "/localetc/passwd")
            .tobytes()
        ),
        refused="not a file created earlier",
    ),
    Case(
        "HardlinkRelativeLong",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .symlink("localetc", "../../../../../../../etc")
            .link("localpasswd", "/localetc/passwd")
            .tobytes()
        ),
        refused="not a file created earlier",
    ),
    Case(
        "HardlinkRelativeUpAndOut",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .symlink("localetc", "upandout/../../../etc")
            .link("localpasswd", "/localetc/passwd")
            .tobytes()
        ),
        refused="not a file created earlier",
    ),
    Case(
        "HardlinkDirectRelative",
        lambda e: (
            t().dir("etc").file("/etc/passwd", b"inside").link("localpasswd", "../../../../../etc/passwd").tobytes()
        ),
        refused="outside the layer",
    ),
    Case(
        "HardlinkDirectAbsolute",
        lambda e: t().dir("etc").file("/etc/passwd", b"inside").link("localpasswd", "/etc/passwd").tobytes(),
        check=lambda e: same_file(e, "localpasswd", "etc/passwd"),
    ),
    Case(
        "HardlinkToTheHostTree",
        lambda e: t().link("localpasswd", f"{e.host}/etc/passwd").tobytes(),
        refused="not a file created earlier",
    ),
    # --- E6 ---
    Case(
        "SymlinkParentDirectory",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .symlink("..", "/etc/")
            .link("localpasswd", "/etc/passwd")
            .tobytes()
        ),
        refused="outside the layer",
    ),
    Case(
        "SymlinkEmptyFilename",
        lambda e: t().dir("etc").file("/etc/passwd", b"inside").symlink("", "/etc/").tobytes(),
        refused="layer root with a non-directory",
    ),
    Case(
        "SymlinkParentRelative",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .symlink("localetc/sub/..", "/etc/")
            .link("/localetc/localpasswd", "/etc/passwd")
            .tobytes()
        ),
        refused="symlink",
    ),
    Case(
        "SymlinkSlashEnded",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .dir("localetc/")
            .link("/localetc/localpasswd", "/etc/passwd")
            .tobytes()
        ),
        check=lambda e: same_file(e, "localetc/localpasswd", "etc/passwd"),
    ),
    # --- E7: replacing directories and symlinks never writes through them ---
    Case(
        "SymlinkOverrideDirectory",
        lambda e: (
            t()
            .file("etc/passwd", b"inside")
            .symlink("localetc", "/etc")
            .link("/localetc/localpasswd", "/etc/passwd")
            .tobytes()
        ),
        prepare=lambda e: os.makedirs(e.path("localetc")),
        refused="symlink",
    ),
    Case(
        "SymlinkOverrideDirectoryRelative",
        lambda e: (
            t()
            .file("etc/passwd", b"inside")
            .symlink("localetc", "../../etc")
            .link("/localetc/localpasswd", "/etc/passwd")
            .tobytes()
        ),
        prepare=lambda e: os.makedirs(e.path("localetc")),
        refused="symlink",
    ),
    Case(
        "DirectoryOverrideSymlink",
        lambda e: (
            t().file("etc/shadow", b"inside").dir("/localetc/").link("/localetc/localshadow", "/etc/shadow").tobytes()
        ),
        prepare=prepare_symlink("localetc", "HOST/etc"),
        check=lambda e: (
            same_file(e, "localetc/localshadow", "etc/shadow"),
            expect(not os.path.islink(e.path("localetc")), "localetc is still a symlink"),
        ),
    ),
    Case(
        "DirectoryOverrideSymlinkAndHardlink",
        lambda e: t().dir("/localetc/").file("/localetc/localpasswd", b"different").tobytes(),
        prepare=prepare_symlink("localetc", "etc"),
        check=lambda e: (
            expect(e.read("localetc/localpasswd") == b"different", "content"),
            expect(e.read("etc/passwd") == b"all users", "etc/passwd changed"),
        ),
    ),
    # --- E8: whiteouts ---
    Case("WhiteoutRootParent", lambda e: t().file(".wh...").tobytes(), refused="invalid whiteout"),
    Case("WhiteoutParent", lambda e: t().file("etc/.wh...").tobytes(), refused="invalid whiteout"),
    Case("WhiteoutRoot", lambda e: t().file(".wh..").tobytes(), refused="invalid whiteout"),
    Case("WhiteoutCurrentDirectory", lambda e: t().file("etc/.wh..").tobytes(), refused="invalid whiteout"),
    Case("WhiteoutEmptyName", lambda e: t().file("etc/.wh.").tobytes(), refused="invalid whiteout"),
    Case(
        "WhiteoutSymlink",
        lambda e: t().file(".wh.localetc").tobytes(),
        prepare=prepare_symlink("localetc", "HOST/etc"),
        check=lambda e: (is_whiteout(e, "localetc"), expect(e.read("etc/passwd") == b"all users", "etc changed")),
    ),
    Case(
        "WhiteoutSymlinkPath",
        lambda e: t().file("localetc/.wh.passwd").tobytes(),
        prepare=prepare_symlink("localetc", "HOST/etc"),
        refused="symlink",
    ),
    Case("WhiteoutDirectoryName", lambda e: t().file(".wh.etc/somefile", b"x").tobytes(), refused="whiteout name"),
    Case(
        "WhiteoutDeadSymlinkParent",
        lambda e: t().file("localetc/.wh.etc").tobytes(),
        prepare=prepare_symlink("localetc", "/dne"),
        refused="symlink",
    ),
    Case(
        "WhiteoutRelativePath",
        lambda e: t().file("dne/../.wh.etc").tobytes(),
        prepare=prepare_etc,
        check=lambda e: is_whiteout(e, "etc"),
    ),
    Case(
        "WhiteoutOutsideTheLayer",
        lambda e: t().file("../.wh.host").tobytes(),
        refused="outside the layer",
    ),
    # --- E9: hardlinks to symlinks link the symlink (CVE-2021-32760) ---
    Case(
        "HardlinkSymlinkBeforeCreateTarget",
        lambda e: (
            t()
            .dir("etc")
            .symlink("localpasswd", "/etc/passwd")
            .link("localpasswd-dup", "localpasswd")
            .file("/etc/passwd", b"after")
            .tobytes()
        ),
        check=lambda e: (
            same_file(e, "localpasswd-dup", "localpasswd"),
            expect(os.readlink(e.path("localpasswd-dup")) == "/etc/passwd", "target"),
        ),
    ),
    Case(
        "HardlinkSymlinkRelative",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .symlink("passwdlink", "../../../../../etc/passwd")
            .link("localpasswd", "/passwdlink")
            .tobytes()
        ),
        check=lambda e: (
            same_file(e, "localpasswd", "passwdlink"),
            expect(os.path.islink(e.path("localpasswd")), "link"),
        ),
    ),
    Case(
        "HardlinkSymlinkAbsolute",
        lambda e: (
            t()
            .dir("etc")
            .file("/etc/passwd", b"inside")
            .symlink("passwdlink", "/etc/passwd")
            .link("localpasswd", "/passwdlink")
            .tobytes()
        ),
        check=lambda e: (
            same_file(e, "localpasswd", "passwdlink"),
            expect(os.path.islink(e.path("localpasswd")), "link"),
        ),
    ),
    Case(
        "HardlinkSymlinkChmod",
        lambda e: (
            t()
            .symlink(f"{e.host}/also-exists-outside-root", f"{e.host}/perm400")
            .link("sketchylink", f"{e.host}/also-exists-outside-root", mode=0o777)
            .tobytes()
        ),
        check=lambda e: expect(os.path.islink(e.path("sketchylink")), "sketchylink is not the symlink itself"),
    ),
    # --- E10, E11: paths ---
    Case(
        "SymlinkOverridePath",
        lambda e: t().symlink("foo", e.host).file("foo/tmp/x", b"owned").tobytes(),
        refused="symlink",
    ),
    Case(
        "AbsoluteNameIsContained",
        lambda e: t().file(f"/etc/{MARKER}", b"inside").file(f"/tmp/{MARKER}", b"inside").tobytes(),
        check=lambda e: expect(e.read(f"etc/{MARKER}") == b"inside", "content"),
    ),
    Case("DotDotName", lambda e: t().file(f"../{MARKER}", b"x").tobytes(), refused="outside the layer"),
    Case("DotDotInTheMiddle", lambda e: t().file(f"a/../../{MARKER}", b"x").tobytes(), refused="outside the layer"),
    Case("DotSlashDotDot", lambda e: t().dir("./../sentinel", mode=0o777).tobytes(), refused="outside the layer"),
    Case("HardlinkNamedOutside", lambda e: t().file("f").link("../x", "f").tobytes(), refused="outside the layer"),
    # --- E13: umoci CVE-2021-29136 ---
    Case("UmociRootSymlink", lambda e: t().symlink(".", e.host).file("file", b"x").tobytes(), refused="layer root"),
    Case("UmociRootSymlinkSlash", lambda e: t().symlink("./", "/tmp").tobytes(), refused="layer root"),
    Case("RootAsHardlink", lambda e: t().file("f").link(".", "f").tobytes(), refused="layer root"),
    # --- E15: CPython tarfile bypasses ---
    Case("CpythonLongPathRealpath", long_path_payload, refused="symlink"),
    Case(
        "CpythonHardlinkToSymlinkThenWrite",
        lambda e: t().symlink("s", f"{e.host}/etc/passwd").link("h", "s").file("./h", b"owned").tobytes(),
        refused="appears twice",
    ),
    Case(
        "CpythonHardlinkToSymlinkAsParent",
        lambda e: t().symlink("s", e.host).link("h", "s").file("h/etc/passwd", b"owned").tobytes(),
        refused="symlink",
    ),
    Case(
        "CpythonDirModeThroughSymlink",  # CVE-2024-12718: metadata of outside files changed
        lambda e: t().dir("s", mode=0o777, uid=1234).tobytes(),
        prepare=prepare_symlink("s", "HOST/perm400"),
        check=lambda e: expect(stat.S_IMODE(os.lstat(e.path("s")).st_mode) == 0o777, "mode"),
    ),
    Case(
        "CpythonFileOwnerThroughSymlink",
        lambda e: t().file("s", b"replaced", mode=0o666, uid=4321, xattrs={"user.x": b"y"}).tobytes(),
        prepare=prepare_symlink("s", "HOST/etc/passwd"),
        check=lambda e: expect(e.read("s") == b"replaced", "content"),
    ),
    # --- our own ---
    Case("PaxPathEscape", lambda e: raw_member({"path": f"../../{MARKER}"}), refused="outside the layer"),
    Case(
        "PaxLinkpathEscape",
        lambda e: raw_member({"linkpath": "../../etc/passwd"}, name="x", kind=tarfile.LNKTYPE),
        refused="outside the layer",
    ),
    Case("GnuLongNameEscape", lambda e: gnu_long_name("../" * 60 + MARKER), refused="outside the layer"),
    Case("NulInPaxPath", lambda e: raw_member({"path": "etc/pass\x00wd"}), refused="NUL|embedded null"),
    Case("HugeSize", lambda e: raw_member({"size": str(1 << 50)}), refused="size limit"),
    Case("OwnerMinusOne", lambda e: raw_member({"uid": str(0xFFFFFFFF)}), refused="invalid owner id"),
    Case("Duplicate", lambda e: t().file("a", b"1").file("/a", b"2").tobytes(), refused="appears twice"),
    Case("FileAsParent", lambda e: t().file("f", b"1").file("f/x", b"2").tobytes(), refused="regular file"),
    Case(
        "DevicesSkippedWhenNotAllowed",
        lambda e: t().char("dev/mem", 1, 1).block("dev/sda", 8, 0).link("dev/mem2", "dev/mem").tobytes(),
        allow_devices=False,
        check=lambda e: expect(not os.path.lexists(e.path("dev/mem")), "device created"),
    ),
    Case(
        "OverlayXattrsAreDropped",
        lambda e: (
            t()
            .dir(
                "d",
                xattrs={
                    "trusted.overlay.redirect": b"/etc",
                    "trusted.overlay.opaque": b"y",
                    "trusted.overlay.overlay.whiteout": b"",
                    "user.overlay.metacopy": b"",
                },
            )
            .tobytes()
        ),
        check=lambda e: expect(os.listxattr(e.path("d")) == [], "overlay xattrs were applied"),
    ),
]


@pytest.fixture(autouse=True)
def remove_breakout_markers() -> Iterator[None]:
    """A broken applier would write MARKER into the real /etc or /tmp: the test fails, the file goes."""
    yield
    for place in ("/etc", "/tmp", "/"):
        path = os.path.join(place, MARKER)
        if os.path.lexists(path):
            os.unlink(path)


@pytest.fixture
def env(tmp_path) -> Env:
    base = str(tmp_path)
    host = os.path.join(base, "host")
    os.makedirs(os.path.join(host, "etc"))
    with open(os.path.join(host, "etc", "passwd"), "wb") as handle:
        handle.write(b"root:x:0:0:host secret\n")
    with open(os.path.join(host, "perm400"), "wb") as handle:
        handle.write(b"...")
    os.chmod(os.path.join(host, "perm400"), 0o400)
    with open(os.path.join(host, "also-exists-outside-root"), "wb") as handle:
        handle.write(b"...")
    os.chmod(os.path.join(host, "also-exists-outside-root"), 0o640)
    sentinel = os.path.join(base, "sentinel", "tmp")
    os.makedirs(sentinel)
    with open(os.path.join(sentinel, "x"), "wb") as handle:
        handle.write(b"sentinel")
    os.symlink("../../host/etc", os.path.join(base, "sentinel", "etc"))
    dest = os.path.join(base, "layer")
    os.mkdir(dest, 0o700)
    return Env(base, dest, host)


def _run(case: Case, env: Env, use_openat2: bool) -> None:
    if case.prepare:
        case.prepare(env)
    before = snapshot(env.base, skip=["layer"])
    import io

    error: Optional[LayerError] = None
    try:
        layers.apply_layer(
            io.BytesIO(case.tar(env)), env.dest, allow_devices=case.allow_devices, use_openat2=use_openat2
        )
    except LayerError as exc:
        error = exc
    assert snapshot(env.base, skip=["layer"]) == before, "something outside the layer directory changed"
    for place in ("/etc", "/tmp", "/"):
        assert not os.path.lexists(os.path.join(place, MARKER)), f"{place}/{MARKER} was written"
    if case.refused:
        assert error is not None, f"{case.name} was not refused"
        import re

        assert re.search(case.refused, str(error)), f"unexpected message: {error}"
    else:
        assert error is None, f"{case.name} was refused: {error}"
    if case.check:
        case.check(env)


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "walk"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_layer(case: Case, env: Env, use_openat2: bool) -> None:
    _run(case, env, use_openat2)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


def test_a_refused_root_symlink_leaves_the_next_layer_inside(env: Env) -> None:
    """umoci CVE-2021-29136: after a layer tried to turn '.' into a symlink, the next one still lands inside."""
    import io

    with pytest.raises(LayerError):
        layers.apply_layer(io.BytesIO(t().symlink(".", env.host).tobytes()), env.dest)
    layers.apply_layer(io.BytesIO(t().file("file", b"second").tobytes()), env.dest)
    assert env.read("file") == b"second"
    assert not os.path.exists(os.path.join(env.host, "file"))
    assert not os.path.islink(env.dest)


RACER = """
import os, sys, time
dest, host = sys.argv[1], sys.argv[2]
a = os.path.join(dest, "a")
swaps = 0
while True:
    parked = os.path.join(dest, "parked-%d" % swaps)
    try:
        os.rename(a, parked)
        os.symlink(host, a)
        swaps += 1
        time.sleep(0.002)
        os.unlink(a)
        os.rename(parked, a)
        time.sleep(0.0002)
    except OSError:
        pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "walk"])
def test_racing_a_directory_swap_for_a_symlink_never_writes_outside(env: Env, use_openat2: bool) -> None:
    """E14 (CVE-2025-47290 class): another process keeps replacing a/ with a symlink to the host tree."""
    import io
    import resource
    import shutil
    import subprocess
    import sys
    import time

    # More new directories than the applier keeps fds for (32 under a soft limit of 256 open
    # files): "a" itself is evicted and opened again while the racer runs.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, soft), hard))
    try:
        tar = t().dir("a")
        for index in range(150):
            tar.file(f"a/d{index}/f", b"x")
        data = tar.tobytes()
        before = snapshot(env.base, skip=["layer"])
        interfered = 0
        for _round in range(3):
            os.mkdir(env.path("a"))
            racer = subprocess.Popen([sys.executable, "-c", RACER, env.dest, env.host])
            try:
                time.sleep(0.2)  # the racer is spinning before the applier starts
                try:
                    layers.apply_layer(io.BytesIO(data), env.dest, use_openat2=use_openat2)
                except LayerError:
                    interfered += 1
            finally:
                racer.kill()
                racer.wait()
            assert snapshot(env.base, skip=["layer"]) == before, "the racer made the applier write outside"
            if any(name.startswith("parked-") for name in os.listdir(env.dest)):
                interfered += 1
            if os.path.islink(env.path("a")):
                os.unlink(env.path("a"))
            shutil.rmtree(env.dest)
            os.mkdir(env.dest, 0o700)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert interfered, "the racer never got in the way: the test proved nothing"
