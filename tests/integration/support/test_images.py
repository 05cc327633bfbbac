"""The test images: umoci (an independent unpacker) must produce the documented trees."""

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from typing import Dict, Iterator, List

import pytest
from support import images, oci


@pytest.fixture
def unpack(umoci: str) -> Iterator:
    """``unpack(fixture, tag)`` -> rootfs path, via ``umoci unpack``; bundles removed afterwards."""
    made: List[str] = []

    def run(fixture: images.FixtureImages, tag: str = "latest") -> str:
        bundle = tempfile.mkdtemp(prefix="berth-umoci-", dir="/var/tmp")
        made.append(bundle)
        os.rmdir(bundle)
        result = subprocess.run(
            [umoci, "unpack", "--image", fixture.ref(tag), bundle], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        return os.path.join(bundle, "rootfs")

    yield run
    for bundle in made:
        shutil.rmtree(bundle, ignore_errors=True)


def _layer_members(layout: oci.Layout, layer: oci.Layer) -> Dict[str, tarfile.TarInfo]:
    assert layer.compression == "gzip"
    data = gzip.decompress(layout.read_blob(layer.digest))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


@pytest.mark.parametrize("tag", ["latest", "uncompressed"])
def test_busybox_unpacks_to_the_documented_tree(busybox_layout: images.FixtureImages, unpack, tag: str) -> None:
    rootfs = unpack(busybox_layout, tag)
    assert images.check_busybox_tree(rootfs) == []
    hello = subprocess.run(
        ["chroot", rootfs, "/bin/sh", "-c", "echo hi from $0"], capture_output=True, text=True, check=True
    )
    assert hello.stdout == "hi from /bin/sh\n"


def test_the_tree_check_notices_what_a_wrong_unpacker_gets_wrong(busybox_layout: images.FixtureImages, unpack) -> None:
    rootfs = unpack(busybox_layout)
    with open(os.path.join(rootfs, "etc/remove-me"), "w", encoding="ascii") as handle:
        handle.write("whiteout not applied")
    os.makedirs(os.path.join(rootfs, "opt/app/sub"))
    os.chmod(os.path.join(rootfs, "tmp"), 0o755)
    os.chown(os.path.join(rootfs, "home/berth"), 0, 0)
    os.unlink(os.path.join(rootfs, "bin/ls"))
    problems = images.check_busybox_tree(rootfs)
    assert sorted(problems) == sorted(
        [
            "/etc/remove-me: should not exist",
            "/opt/app/sub: should not exist",
            "/tmp: mode 755, expected 1777",
            "/home/berth: owner 0:0, expected 1000:1000",
            "/bin/ls: expected a symlink to /bin/busybox",
        ]
    )


def test_busybox_layers_hold_the_whiteouts_and_the_opaque_dir(busybox_layout: images.FixtureImages) -> None:
    image = busybox_layout.image("latest")
    assert len(image.layers) == 3
    base, changes, opaque = (_layer_members(busybox_layout.layout, layer) for layer in image.layers)
    assert base["bin/busybox"].size > 500_000
    assert base["usr/share/berth/second-name"].islnk()
    assert base["usr/share/berth/xattr"].pax_headers["SCHILY.xattr.user.berth"] == "layer1"
    assert base["usr/local/bin/setuid-file"].mode == 0o4755
    assert {".wh.remove-me", ".wh.gone", ".wh.reborn"} <= {os.path.basename(n) for n in changes}
    assert "etc/motd" in changes
    assert "opt/app/.wh..wh..opq" in opaque
    total = sum(layer.size for layer in image.layers)
    assert 500_000 < total < 2_000_000, f"busybox image is {total} bytes compressed"
    config = image.config
    assert config["config"]["Cmd"] == ["sh"]
    assert [h.get("empty_layer", False) for h in config["history"]] == [False, True, False, False, True]


def test_busybox_multi_platform_children_differ_only_by_their_marker(
    busybox_layout: images.FixtureImages, unpack
) -> None:
    index = busybox_layout.index("multi")
    assert [str(i.platform) for i in index.images] == list(images.MULTI_PLATFORMS)
    base = busybox_layout.image("latest")
    for child in index.images:
        assert child.layers[:3] == base.layers
        assert len(child.layers) == 4
        assert child.config["architecture"] == child.platform.architecture
        assert child.config.get("variant") == child.platform.variant
    assert len({child.image_id for child in index.images}) == 3
    for platform in images.MULTI_PLATFORMS:
        rootfs = unpack(busybox_layout, images.platform_tag(platform))
        assert images.check_busybox_tree(rootfs, platform=platform) == []


def test_busybox_cache_is_reused(busybox_layout: images.FixtureImages) -> None:
    began = time.monotonic()
    again = images.busybox_images()
    assert again.path == busybox_layout.path
    assert time.monotonic() - began < 1.0
    assert again.info["host_platform"] == str(oci.Platform.host())


def _report_build(fixture: images.FixtureImages, began: float) -> None:
    info = fixture.info
    print(
        f"\n{fixture.name}: built in {info['build_seconds']} s (at {info['built_at']}), "
        f"fixture ready in {time.monotonic() - began:.2f} s this session, layer {info['layer_size']} bytes"
    )


@pytest.mark.slow
def test_nginx_image_is_debian_plus_nginx_like_the_official_one(unpack) -> None:
    began = time.monotonic()
    nginx = images.nginx_images()
    _report_build(nginx, began)
    debian = images.debian_images()
    image = nginx.image("latest")
    base = debian.image("latest")
    assert len(image.layers) == 2
    assert image.layers[0] == base.layers[0]
    config = image.config["config"]
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert config["ExposedPorts"] == {"80/tcp": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert nginx.info["opaque_dirs"] > 0
    assert nginx.info["whiteouts"] > 0
    layer = _layer_members(nginx.layout, image.layers[1])
    assert "usr/sbin/nginx" in layer
    assert layer["var/log/nginx/access.log"].linkname == "/dev/stdout"
    assert layer["var/log/nginx/error.log"].linkname == "/dev/stderr"
    assert "var/log/.wh.dpkg.log" in layer
    assert not any("trusted.overlay" in key for m in layer.values() for key in m.pax_headers)
    assert not any(n.endswith("policy-rc.d") for n in layer), "policy-rc.d must not ship"
    # apt re-owns lists/partial (a copied-up dir), but no package list may ship
    assert {n for n in layer if n.startswith("var/lib/apt/lists/")} <= {"var/lib/apt/lists/partial"}

    rootfs = unpack(nginx)
    assert not os.path.exists(os.path.join(rootfs, "var/log/dpkg.log"))
    assert os.path.exists(os.path.join(rootfs, "var/lib/apt/lists/partial"))
    with open(os.path.join(rootfs, "var/www/html/index.nginx-debian.html"), encoding="utf-8") as handle:
        assert "Welcome to nginx!" in handle.read()
    version = subprocess.run(["chroot", rootfs, "/usr/sbin/nginx", "-v"], capture_output=True, text=True, check=False)
    assert version.returncode == 0
    assert version.stderr.startswith("nginx version: nginx/")
    with open(os.path.join(rootfs, "etc/os-release"), encoding="ascii") as handle:
        assert "VERSION_CODENAME=bookworm" in handle.read()
    assert os.listdir(os.path.join(rootfs, "dev")) == []

    began = time.monotonic()
    assert images.nginx_images().path == nginx.path
    assert time.monotonic() - began < 2.0, "a warm nginx fixture comes from the cache"


@pytest.mark.slow
def test_systemd_image_boots_from_sbin_init() -> None:
    began = time.monotonic()
    systemd = images.systemd_images()
    _report_build(systemd, began)
    image = systemd.image("latest")
    assert image.layers[0] == images.debian_images().image("latest").layers[0]
    assert image.config["config"]["Cmd"] == ["/sbin/init"]
    assert image.config["config"]["StopSignal"] == "SIGRTMIN+3"
    layer = _layer_members(systemd.layout, image.layers[1])
    # bookworm has merged /usr: /sbin and /lib are symlinks into /usr in the base layer
    assert layer["usr/sbin/init"].linkname == "/lib/systemd/systemd"
    assert layer["usr/lib/systemd/systemd"].isfile()
    assert layer["usr/lib/systemd/systemd"].mode & 0o111
    assert layer["etc/machine-id"].size == 0, "each container must get its own machine id"


def test_debian_mirror_comes_from_apt_sources() -> None:
    from support import debian

    mirror = debian.debian_mirror("bookworm")
    assert mirror.startswith(("http://", "https://"))
    assert "security" not in mirror
    with open("/etc/apt/sources.list.d/debian.sources", encoding="utf-8") as handle:
        sources = handle.read()
    assert mirror in sources
