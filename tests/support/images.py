"""The test images, built offline and cached as OCI layouts.

``busybox_images()`` -- a ~1 MB image from Debian's ``busybox-static``.
Tags in its layout:

===============  ==============================================================
``latest``       3 gzip layers for the host platform (the tree below)
``zstd``         the same layers compressed with zstd (same diff_ids, same id)
``uncompressed`` the same layers as plain tar
``multi``        an index of linux/amd64, linux/arm64 and linux/arm/v7: each is
                 ``latest`` plus a 4th layer with ``/etc/berth-platform``
                 naming its platform (all carry the host's busybox binary);
                 each child is also tagged alone (``platform_tag``), e.g.
                 ``multi-linux-arm-v7``, for tools that cannot pick from an index
===============  ==============================================================

Layers of ``latest`` and what they exercise:

1. base: ``/bin/busybox``, one symlink per applet (``busybox --list-full``) to
   ``/bin/busybox``, ``/etc/passwd`` and ``/etc/group`` (root, berth 1000,
   nobody), ``/etc/motd``, ``/etc/remove-me``, ``/var/lib/gone/{a,sub/b}``,
   ``/var/lib/reborn/old.txt``, ``/opt/app/{old.txt,sub/deep.txt}``, a hard
   link pair ``/usr/share/berth/{original,hardlink}``, a file with the xattr
   ``user.berth=layer1``, a setuid file, a file with mtime 1234567890,
   ``/home/berth`` owned by 1000:1000 mode 0750, ``/tmp`` 1777, ``/root`` 0700.
2. changes: ``/etc/motd`` modified; file whiteout ``/etc/.wh.remove-me``;
   directory whiteouts ``/var/lib/.wh.gone`` and ``/var/lib/.wh.reborn``;
   ``/etc/added-in-layer2``; ``/opt/app/from-layer2.txt``.
3. opaque: ``/opt/app/.wh..wh..opq`` with ``/opt/app/new.txt``; ``/var/lib/reborn/new.txt``
   (a directory whited out below and created again).

``BUSYBOX_EXPECTED`` and ``BUSYBOX_ABSENT`` state the final tree after the
three layers are applied; ``check_busybox_tree(rootfs)`` compares a tree
with it and returns the differences.

``debian_images()`` (debootstrap minbase bookworm), ``nginx_images()``
(Debian + ``nginx-light``, configured like the official nginx image) and
``systemd_images()`` (Debian + ``systemd systemd-sysv``) are built from the
machine's Debian mirror, about 80 s cold, and reused from the cache after.
"""

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import cache, debian, oci
from .oci import Entry, History, ImageConfig, Layout, Platform, Target

HERE = os.path.dirname(os.path.abspath(__file__))
BUSYBOX_BINARY = "/bin/busybox"
MULTI_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
PLATFORM_MARKER = "etc/berth-platform"
LAYOUT_DIR = "layout"
ROOTFS_DIR = "rootfs"
DEBIAN_SUITE = "bookworm"
BASE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class FixtureImages:
    """A cached build: its OCI layout and what ``build.json`` recorded."""

    name: str
    path: str

    @property
    def layout_path(self) -> str:
        return os.path.join(self.path, LAYOUT_DIR)

    @property
    def layout(self) -> Layout:
        return Layout(self.layout_path)

    @property
    def info(self) -> Dict[str, Any]:
        return cache.build_info(self.path)

    def get(self, tag: str = "latest") -> Target:
        return self.layout.get(tag)

    def image(self, tag: str = "latest") -> oci.Image:
        target = self.get(tag)
        if not isinstance(target, oci.Image):
            raise TypeError(f"{self.name}:{tag} is a multi-platform index, not a single image")
        return target

    def index(self, tag: str = "multi") -> oci.Index:
        target = self.get(tag)
        if not isinstance(target, oci.Index):
            raise TypeError(f"{self.name}:{tag} is a single image, not an index")
        return target

    def ref(self, tag: str = "latest") -> str:
        """``LAYOUT:TAG`` as umoci (``--image``) and skopeo (``oci:``) name it."""
        return f"{self.layout_path}:{tag}"


# ---------------------------------------------------------------------------------
# busybox
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    """One path of an expected tree: kind, mode, owner and content or link target."""

    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    data: Optional[bytes] = None
    link: Optional[str] = None


PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "berth:x:1000:1000:Berth test user:/home/berth:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nberth:x:1000:\nnogroup:x:65534:\n"
MOTD_1 = b"written in layer 1\n"
MOTD_2 = b"modified in layer 2\n"
ORIGINAL = b"one inode, two names\n"
SETUID_DATA = b"not a program; the mode is what matters\n"
TIMED_MTIME = 1234567890

BUSYBOX_EXPECTED: Dict[str, Expect] = {
    "bin/busybox": Expect("file", 0o755),
    "bin/sh": Expect("symlink", 0o777, link="/bin/busybox"),
    "etc": Expect("dir", 0o755),
    "etc/passwd": Expect("file", 0o644, data=PASSWD.encode()),
    "etc/group": Expect("file", 0o644, data=GROUP.encode()),
    "etc/motd": Expect("file", 0o644, data=MOTD_2),
    "etc/added-in-layer2": Expect("file", 0o644, data=b"added in layer 2\n"),
    "home/berth": Expect("dir", 0o750, uid=1000, gid=1000),
    "home/berth/.profile": Expect("file", 0o640, uid=1000, gid=1000, data=b"export PS1='berth$ '\n"),
    "opt/app": Expect("dir", 0o755),
    "opt/app/new.txt": Expect("file", 0o644, data=b"added in layer 3 after the opaque whiteout\n"),
    "root": Expect("dir", 0o700),
    "tmp": Expect("dir", 0o1777),
    "usr/local/bin/setuid-file": Expect("file", 0o4755, data=SETUID_DATA),
    "usr/share/berth/original": Expect("file", 0o644, data=ORIGINAL),
    "usr/share/berth/second-name": Expect("file", 0o644, data=ORIGINAL),
    "usr/share/berth/xattr": Expect("file", 0o644, data=b"has user.berth=layer1\n"),
    "usr/share/berth/timed": Expect("file", 0o644, data=b"mtime 1234567890\n"),
    "var/lib": Expect("dir", 0o755),
    "var/lib/reborn": Expect("dir", 0o755),
    "var/lib/reborn/new.txt": Expect("file", 0o644, data=b"created again in layer 3\n"),
}
"""Paths that must exist after all three layers, with their attributes."""

BUSYBOX_ABSENT: Tuple[str, ...] = (
    "etc/remove-me",
    "etc/.wh.remove-me",
    "var/lib/gone",
    "var/lib/.wh.gone",
    "var/lib/.wh.reborn",
    "var/lib/reborn/old.txt",
    "opt/app/old.txt",
    "opt/app/sub",
    "opt/app/from-layer2.txt",
    "opt/app/.wh..wh..opq",
    PLATFORM_MARKER,
)
"""Paths that must not exist: whited out, hidden by the opaque dir, or whiteout markers themselves."""

BUSYBOX_CONFIG = ImageConfig(
    env=[BASE_PATH, "BERTH_FIXTURE=busybox"],
    cmd=["sh"],
    working_dir="/",
    labels={"org.berth.fixture": "busybox"},
)
BUSYBOX_HISTORY = (
    History("ADD busybox-static /bin/busybox + applet symlinks, /etc, test files"),
    History("ENV BERTH_FIXTURE=busybox", empty_layer=True),
    History("RUN modify /etc/motd; rm /etc/remove-me /var/lib/gone /var/lib/reborn"),
    History("RUN replace /opt/app (opaque); mkdir /var/lib/reborn"),
    History('CMD ["sh"]', empty_layer=True),
)


def busybox_applets(binary: str = BUSYBOX_BINARY) -> List[str]:
    """Applet paths (``bin/sh``, ``usr/bin/wget``, ...) of *binary*, without the binary itself."""
    out = subprocess.run([binary, "--list-full"], capture_output=True, text=True, check=True).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip()} - {"bin/busybox"})


def busybox_layers(binary: str = BUSYBOX_BINARY) -> List[List[Entry]]:
    """The entries of the three busybox layers (see the module docstring)."""
    applets = busybox_applets(binary)
    dirs = {"dev", "proc", "sys", "etc", "opt", "opt/app", "opt/app/sub", "usr", "usr/share", "usr/share/berth"}
    dirs |= {"usr/local", "usr/local/bin", "var", "var/lib", "var/lib/gone", "var/lib/gone/sub", "var/lib/reborn"}
    dirs |= {"var/log", "home", "bin"} | {os.path.dirname(a) for a in applets if "/" in a}
    base = [oci.directory(d) for d in sorted(dirs)]
    base += [
        oci.directory("root", mode=0o700),
        oci.directory("tmp", mode=0o1777),
        oci.directory("home/berth", mode=0o750, uid=1000, gid=1000),
        oci.file("home/berth/.profile", "export PS1='berth$ '\n", mode=0o640, uid=1000, gid=1000),
        Entry("bin/busybox", "file", source=binary, mode=0o755),
        *[oci.symlink(applet, "/bin/busybox") for applet in applets],
        oci.file("etc/passwd", PASSWD),
        oci.file("etc/group", GROUP),
        oci.file("etc/motd", MOTD_1),
        oci.file("etc/remove-me", "whited out in layer 2\n"),
        oci.file("var/lib/gone/a", "a\n"),
        oci.file("var/lib/gone/sub/b", "b\n"),
        oci.file("var/lib/reborn/old.txt", "whited out with its directory in layer 2\n"),
        oci.file("opt/app/old.txt", "hidden by the opaque directory of layer 3\n"),
        oci.file("opt/app/sub/deep.txt", "hidden by the opaque directory of layer 3\n"),
        oci.file("usr/share/berth/original", ORIGINAL),
        oci.hardlink("usr/share/berth/second-name", "usr/share/berth/original"),
        oci.file("usr/share/berth/xattr", "has user.berth=layer1\n", xattrs={"user.berth": b"layer1"}),
        oci.file("usr/share/berth/timed", "mtime 1234567890\n", mtime=TIMED_MTIME),
        oci.file("usr/local/bin/setuid-file", SETUID_DATA, mode=0o4755),
    ]
    changes = [
        oci.directory("etc"),
        oci.file("etc/motd", MOTD_2),
        oci.whiteout("etc/remove-me"),
        oci.file("etc/added-in-layer2", "added in layer 2\n"),
        oci.directory("var/lib"),
        oci.whiteout("var/lib/gone"),
        oci.whiteout("var/lib/reborn"),
        oci.directory("opt/app"),
        oci.file("opt/app/from-layer2.txt", "hidden by the opaque directory of layer 3\n"),
    ]
    opaque = [
        oci.directory("opt/app"),
        oci.opaque("opt/app"),
        oci.file("opt/app/new.txt", "added in layer 3 after the opaque whiteout\n"),
        oci.directory("var/lib/reborn"),
        oci.file("var/lib/reborn/new.txt", "created again in layer 3\n"),
    ]
    return [base, changes, opaque]


def _build_busybox(work: str) -> Dict[str, object]:
    layout = Layout(os.path.join(work, LAYOUT_DIR))
    host = Platform.host()
    layer_entries = busybox_layers()
    for tag, compression in (("latest", "gzip"), ("zstd", "zstd"), ("uncompressed", "none")):
        layers = [layout.add_layer(entries, compression) for entries in layer_entries]
        layout.tag(tag, layout.add_image(layers, BUSYBOX_CONFIG, BUSYBOX_HISTORY, host))
    base = layout.get("latest")
    assert isinstance(base, oci.Image)
    children = []
    for name in MULTI_PLATFORMS:
        platform = Platform.parse(name)
        marker = layout.add_layer([oci.directory("etc"), oci.file(PLATFORM_MARKER, f"{platform}\n")])
        history = (*BUSYBOX_HISTORY, History(f"ADD /{PLATFORM_MARKER} ({platform})"))
        children.append(layout.add_image([*base.layers, marker], BUSYBOX_CONFIG, history, platform))
    layout.tag("multi", layout.add_index(children))
    for child in children:
        layout.tag(platform_tag(str(child.platform)), child)
    return {"host_platform": str(host), "busybox_sha256": oci.file_digest(BUSYBOX_BINARY)}


def platform_tag(platform: str) -> str:
    """The layout tag of one child of ``multi``: ``multi-linux-arm-v7`` for linux/arm/v7."""
    return "multi-" + platform.replace("/", "-")


def busybox_images() -> FixtureImages:
    """The busybox layout (built once per builder source and busybox binary)."""
    if not os.path.exists(BUSYBOX_BINARY):
        raise FileNotFoundError(f"{BUSYBOX_BINARY} is missing: run `make setup` (apt-get install busybox-static)")
    key = cache.recipe_key(
        cache.source_of(os.path.join(HERE, "oci.py"), os.path.join(HERE, "images.py")),
        oci.file_digest(BUSYBOX_BINARY),
        str(Platform.host()),
    )
    return FixtureImages("busybox", cache.cached("busybox", key, _build_busybox))


def check_tree(rootfs: str, expected: Dict[str, Expect], absent: Sequence[str]) -> List[str]:
    """Differences between the tree at *rootfs* and the expectation (empty when equal)."""
    problems = []
    for rel, want in expected.items():
        path = os.path.join(rootfs, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"/{rel}: missing")
            continue
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
        if not stat.S_ISREG(st.st_mode) and kind == "file":
            kind = "special"
        got_mode = stat.S_IMODE(st.st_mode)
        if kind != want.kind:
            problems.append(f"/{rel}: is a {kind}, expected a {want.kind}")
            continue
        if kind != "symlink" and got_mode != want.mode:
            problems.append(f"/{rel}: mode {got_mode:o}, expected {want.mode:o}")
        if (st.st_uid, st.st_gid) != (want.uid, want.gid):
            problems.append(f"/{rel}: owner {st.st_uid}:{st.st_gid}, expected {want.uid}:{want.gid}")
        if want.data is not None:
            with open(path, "rb") as handle:
                data = handle.read()
            if data != want.data:
                problems.append(f"/{rel}: content {data[:60]!r}, expected {want.data[:60]!r}")
        if want.link is not None and os.readlink(path) != want.link:
            problems.append(f"/{rel}: points to {os.readlink(path)!r}, expected {want.link!r}")
    problems += [f"/{rel}: should not exist" for rel in absent if os.path.lexists(os.path.join(rootfs, rel))]
    return problems


def check_busybox_tree(rootfs: str, platform: Optional[str] = None) -> List[str]:
    """Differences between *rootfs* and the applied busybox image (``multi`` children: give *platform*)."""
    absent = [p for p in BUSYBOX_ABSENT if platform is None or p != PLATFORM_MARKER]
    problems = check_tree(rootfs, BUSYBOX_EXPECTED, absent)
    for applet in busybox_applets():
        path = os.path.join(rootfs, applet)
        if not os.path.islink(path) or os.readlink(path) != "/bin/busybox":
            problems.append(f"/{applet}: expected a symlink to /bin/busybox")
    original, link = (os.path.join(rootfs, "usr/share/berth", n) for n in ("original", "second-name"))
    if os.path.exists(original) and os.path.exists(link) and not os.path.samefile(original, link):
        problems.append("/usr/share/berth/second-name: not a hard link of /usr/share/berth/original")
    timed = os.path.join(rootfs, "usr/share/berth/timed")
    if os.path.exists(timed) and int(os.lstat(timed).st_mtime) != TIMED_MTIME:
        problems.append(f"/usr/share/berth/timed: mtime {int(os.lstat(timed).st_mtime)}, expected {TIMED_MTIME}")
    xattr_file = os.path.join(rootfs, "usr/share/berth/xattr")
    if os.path.exists(xattr_file):
        try:
            value = os.getxattr(xattr_file, "user.berth")
        except OSError:
            value = b""
        if value != b"layer1":
            problems.append(f"/usr/share/berth/xattr: user.berth={value!r}, expected b'layer1'")
    if platform is not None:
        marker = os.path.join(rootfs, PLATFORM_MARKER)
        content = None
        if os.path.exists(marker):
            with open(marker, encoding="ascii") as handle:
                content = handle.read()
        if content != f"{platform}\n":
            problems.append(f"/{PLATFORM_MARKER}: {content!r}, expected {platform!r}")
    return problems


# ---------------------------------------------------------------------------------
# Debian, nginx, systemd
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DebianRecipe:
    """Packages installed over the Debian base, commands run after, and the image config."""

    name: str
    packages: Tuple[str, ...]
    post: Tuple[str, ...]
    config: ImageConfig
    history: Tuple[History, ...]

    def key_material(self) -> str:
        return json.dumps(
            {
                "packages": self.packages,
                "post": self.post,
                "config": self.config.to_json(),
                "history": [h.to_json() for h in self.history],
            },
            sort_keys=True,
        )


DEBIAN_CONFIG = ImageConfig(env=[BASE_PATH], cmd=["bash"], labels={"org.berth.fixture": "debian"})
DEBIAN_HISTORY = (
    History(f"debootstrap --variant=minbase {DEBIAN_SUITE}; rm cached debs and apt lists"),
    History('CMD ["bash"]', empty_layer=True),
)
NGINX = DebianRecipe(
    name="nginx",
    packages=("nginx-light",),
    post=(
        # Like the official image: logs go to the container's stdout/stderr.
        "ln -sf /dev/stdout /var/log/nginx/access.log",
        "ln -sf /dev/stderr /var/log/nginx/error.log",
        # The install logs only describe the build; removing the base's copies gives real file whiteouts.
        "rm -rf /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log",
    ),
    config=ImageConfig(
        env=[BASE_PATH],
        cmd=["nginx", "-g", "daemon off;"],
        exposed_ports=["80/tcp"],
        stop_signal="SIGQUIT",
        labels={"org.berth.fixture": "nginx"},
    ),
    history=(
        History("apt-get install --no-install-recommends nginx-light; log to stdout/stderr"),
        History("EXPOSE 80/tcp", empty_layer=True),
        History("STOPSIGNAL SIGQUIT", empty_layer=True),
        History('CMD ["nginx", "-g", "daemon off;"]', empty_layer=True),
    ),
)
SYSTEMD = DebianRecipe(
    name="debian-systemd",
    packages=("systemd", "systemd-sysv"),
    # Every container must get its own machine id: ship the "uninitialised" empty file.
    post=(": > /etc/machine-id", "rm -f /var/lib/dbus/machine-id"),
    config=ImageConfig(
        env=[BASE_PATH],
        cmd=["/sbin/init"],
        stop_signal="SIGRTMIN+3",
        labels={"org.berth.fixture": "debian-systemd"},
    ),
    history=(
        History("apt-get install --no-install-recommends systemd systemd-sysv"),
        History("STOPSIGNAL SIGRTMIN+3", empty_layer=True),
        History('CMD ["/sbin/init"]', empty_layer=True),
    ),
)


def _builder_source() -> bytes:
    return cache.source_of(os.path.join(HERE, "oci.py"), os.path.join(HERE, "debian.py"))


def _debian_key(mirror: str) -> str:
    material = DEBIAN_CONFIG.to_json(), [h.to_json() for h in DEBIAN_HISTORY]
    return cache.recipe_key(_builder_source(), DEBIAN_SUITE, "minbase", mirror, repr(material), str(Platform.host()))


def debian_images(mirror: Optional[str] = None) -> FixtureImages:
    """Debian minbase: the layout (tag ``latest``) and the unpacked ``rootfs/`` other recipes build on."""
    mirror = mirror or debian.debian_mirror(DEBIAN_SUITE)

    def build(work: str) -> Dict[str, object]:
        rootfs = os.path.join(work, ROOTFS_DIR)
        debian.debootstrap(rootfs, DEBIAN_SUITE, mirror)
        debian.clean_rootfs(rootfs)
        layout = Layout(os.path.join(work, LAYOUT_DIR))
        layer = layout.add_layer(oci.entries_from_dir(rootfs))
        layout.tag("latest", layout.add_image([layer], DEBIAN_CONFIG, DEBIAN_HISTORY))
        return {"suite": DEBIAN_SUITE, "mirror": mirror, "layer_size": layer.size}

    return FixtureImages("debian", cache.cached("debian", _debian_key(mirror), build))


def debian_recipe_images(recipe: DebianRecipe, mirror: Optional[str] = None) -> FixtureImages:
    """Debian + the recipe's packages as a second layer (tag ``latest``)."""
    mirror = mirror or debian.debian_mirror(DEBIAN_SUITE)
    base = debian_images(mirror)
    key = cache.recipe_key(_builder_source(), _debian_key(mirror), recipe.key_material())

    def build(work: str) -> Dict[str, object]:
        base_image = base.image("latest")
        scratch = os.path.join(work, "scratch")
        os.makedirs(scratch)
        upper = debian.install_in_overlay(os.path.join(base.path, ROOTFS_DIR), scratch, recipe.packages, recipe.post)
        layout = Layout(os.path.join(work, LAYOUT_DIR))
        for layer in base_image.layers:
            layout.link_blob_from(base.layout, layer.digest)
        entries = oci.entries_from_dir(upper, overlay=True)
        layer = layout.add_layer(entries)
        history = (*DEBIAN_HISTORY[:1], *recipe.history)
        image = layout.add_image([*base_image.layers, layer], recipe.config, history)
        layout.tag("latest", image)
        whiteouts = sum(1 for e in entries if os.path.basename(e.path).startswith(oci.WHITEOUT_PREFIX))
        oci_opaque = sum(1 for e in entries if os.path.basename(e.path) == oci.OPAQUE_MARKER)
        shutil.rmtree(scratch)
        return {
            "packages": list(recipe.packages),
            "mirror": mirror,
            "layer_size": layer.size,
            "whiteouts": whiteouts - oci_opaque,
            "opaque_dirs": oci_opaque,
        }

    return FixtureImages(recipe.name, cache.cached(recipe.name, key, build))


def nginx_images(mirror: Optional[str] = None) -> FixtureImages:
    return debian_recipe_images(NGINX, mirror)


def systemd_images(mirror: Optional[str] = None) -> FixtureImages:
    return debian_recipe_images(SYSTEMD, mirror)
