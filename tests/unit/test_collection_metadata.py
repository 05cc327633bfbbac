"""The collection's metadata agrees with its content."""

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(path: str) -> dict:
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_action_group_lists_exactly_the_modules() -> None:
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules")) if name.endswith(".py"))
    group = _load("meta/runtime.yml")["action_groups"]["containers"]
    assert sorted(group) == modules


def test_galaxy_identity() -> None:
    galaxy = _load("galaxy.yml")
    assert (galaxy["namespace"], galaxy["name"]) == ("berth", "containers")
    assert galaxy["version"] == "0.1.0"
    assert _load("meta/runtime.yml")["requires_ansible"] == ">=2.16.0"
