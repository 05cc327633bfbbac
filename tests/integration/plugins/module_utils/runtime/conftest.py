"""Fixtures for tests of the runtime's public API (images.py, containers.py, the CLI)."""

from typing import Callable, Iterator

import pytest
from support.berth_env import BerthEnv
from support.registry import Registry


@pytest.fixture(scope="session")
def mirror(registry: Registry, push_image: Callable, busybox_layout, nginx_layout) -> Registry:
    """The plain test registry holding library/busybox and library/nginx, used as a docker.io mirror."""
    push_image(registry, busybox_layout)
    push_image(registry, nginx_layout)
    return registry


@pytest.fixture(scope="session")
def host(mirror: Registry) -> Iterator[BerthEnv]:
    """One isolated Berth host for the session, with busybox and nginx pulled."""
    env = BerthEnv(mirrors=[mirror.url])
    env.berth("pull", "busybox")
    env.berth("pull", "nginx")
    yield env
    assert env.destroy() == []


@pytest.fixture
def fresh_host(mirror: Registry) -> Iterator[BerthEnv]:
    """An isolated Berth host with an empty store, for one test."""
    env = BerthEnv(mirrors=[mirror.url])
    yield env
    assert env.destroy() == []
