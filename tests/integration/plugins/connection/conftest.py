"""Fixtures of the connection plugin's tests: a Berth host with the Ansible target image (python3, sudo, systemd)."""

import tempfile
from typing import Callable, Iterator

import pytest
from support import images, pusher
from support.ansible_images import ansible_target_images
from support.berth_containers import Containers
from support.berth_env import BerthEnv
from support.registry import Registry

TARGET_IMAGE = "debian-ansible-target"


@pytest.fixture(scope="session")
def target_layout() -> images.FixtureImages:
    """Debian + python3, sudo, systemd, users ansible/deploy (cached; about 20 s cold)."""
    return ansible_target_images()


@pytest.fixture(scope="session")
def target_host(
    registry: Registry, push_image: Callable[..., pusher.PushResult], target_layout: images.FixtureImages
) -> Iterator[BerthEnv]:
    """An isolated Berth host whose docker.io mirror is the test registry, with the target image pulled."""
    push_image(registry, target_layout)
    env = BerthEnv(mirrors=[registry.url])
    env.berth("pull", TARGET_IMAGE, timeout=600)
    yield env
    assert env.destroy() == []


@pytest.fixture
def containers(target_host: BerthEnv) -> Iterator[Containers]:
    """Containers of one test, removed after it."""
    started = Containers(target_host)
    yield started
    assert started.remove_all() == []


@pytest.fixture
def work_dir() -> Iterator[str]:
    """A private directory for inventories, playbooks and transferred files (under /var/tmp: large files)."""
    with tempfile.TemporaryDirectory(prefix="berth-conn-", dir="/var/tmp") as path:
        yield path
