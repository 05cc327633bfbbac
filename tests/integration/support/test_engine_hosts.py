"""Self-test of the Molecule instance images (support/engine_hosts.py): what their own layer must hold.

The scenarios prove the images work (extensions/molecule/); this pins the
promises a scenario relies on, read straight from the recipe layer: the EL
image presents itself as Rocky 9 and has dnf over an empty rpm database, both
have no Debian archive to reach and no login prompts on the host's ttys.
"""

import tarfile
from typing import Dict

import pytest
from support import engine_hosts

pytestmark = [pytest.mark.root, pytest.mark.slow]


def recipe_layer(name: str) -> Dict[str, tarfile.TarInfo]:
    image = engine_hosts.engine_host_images(name).image("latest")
    with tarfile.open(image.blob_path(image.layers[-1].digest)) as tar:
        return {member.name.lstrip("./"): member for member in tar.getmembers()}


def read(name: str, path: str) -> str:
    image = engine_hosts.engine_host_images(name).image("latest")
    with tarfile.open(image.blob_path(image.layers[-1].digest)) as tar:
        handle = tar.extractfile(path)
        assert handle is not None, path
        return handle.read().decode()


@pytest.fixture(scope="module", params=sorted(engine_hosts.RECIPES))
def layer(request: pytest.FixtureRequest) -> Dict[str, tarfile.TarInfo]:
    return recipe_layer(request.param)


def test_both_images_boot_without_ttys_or_an_archive_and_have_the_engine_libraries(layer) -> None:
    for unit in ("getty.target", "getty@.service", "autovt@.service"):
        member = layer[f"etc/systemd/system/{unit}"]
        assert (member.issym(), member.linkname) == (True, "/dev/null"), unit
    assert "etc/apt/.wh.sources.list" in layer
    assert layer["etc/machine-id"].size == 0
    assert any(path.startswith("usr/sbin/xtables-nft-multi") for path in layer), "iptables is missing"
    assert any(path.startswith("usr/lib/x86_64-linux-gnu/libdevmapper.so") for path in layer)
    assert "usr/bin/python3" in layer


def test_the_el_image_presents_itself_as_rocky_9() -> None:
    name = engine_hosts.EL_ENGINE_HOST.name
    layer = recipe_layer(name)
    os_release = dict(line.split("=", 1) for line in read(name, "usr/lib/os-release").splitlines())
    assert (os_release["ID"], os_release["VERSION_ID"], os_release["ID_LIKE"]) == (
        '"rocky"',
        '"9.5"',
        '"rhel centos fedora"',
    )
    assert read(name, "etc/rocky-release") == engine_hosts.ROCKY_RELEASE + "\n"
    for link in ("etc/redhat-release", "etc/system-release"):
        assert (layer[link].issym(), layer[link].linkname) == (True, "rocky-release"), link
    assert "etc/.wh.debian_version" in layer
    assert read(name, "etc/dnf/vars/releasever") == "9\n"
    assert {"usr/bin/dnf", "usr/bin/rpm"} <= set(layer)
    assert any(path.startswith("var/lib/rpm/") for path in layer), "no rpm database"


def test_the_debian_image_has_the_apt_binding_ansible_needs() -> None:
    layer = recipe_layer(engine_hosts.DEBIAN_ENGINE_HOST.name)
    assert any(path.startswith("usr/lib/python3/dist-packages/apt_pkg") for path in layer)
    assert not any(path.startswith("usr/bin/dnf") for path in layer)
