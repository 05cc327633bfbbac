"""The berth host behind a Molecule scenario: its instance images, pulled by berth, and the mirrors they serve.

``extensions/molecule/shared/create.yml`` and ``destroy.yml`` run this module
(with ``tests`` on ``PYTHONPATH``)::

    python -m support.molecule_env up STATE_DIR NAME=IMAGE...
    python -m support.molecule_env down STATE_DIR

``up`` builds, or takes from /var/tmp/berth-fixtures, the docker-ce mirror of
support/engine_repos.py and the images of support/engine_hosts.py; starts a
registry on a free loopback port with its storage in the berth host's
directory, pushes the images and ``library/busybox`` there, makes an isolated
berth host (support/berth_env.py: its own data root, exec root, bridge and
subnet), pulls the images into it with ``berth pull`` and stops the registry.
It links ``STATE_DIR/berth/daemon.json`` to the host's configuration (the
scenarios' ``BERTH_CONFIG``), makes each instance's ``/var/lib/docker``
directory, and prints what create.yml needs, as JSON::

    {"berth_config": ..., "instances": {NAME: {"image": REF, "docker_root": DIR}},
     "docker_ce_mirror": {"root": DIR, "fingerprint": ..., "version": ...},
     "hub_mirror": {"storage": DIR, "busybox_id": "sha256:..."}, "registry_binary": PATH}

The registry storage stays: the instances serve it on their own loopback as
their Docker Hub mirror (``library/busybox``), next to the docker-ce mirror.

``down`` removes every container of that berth host, its bridge and network
leftovers and its directories, then STATE_DIR's link and state file.  It is a
no-op when ``up`` never ran (Molecule destroys before it creates).
"""

import json
import os
import shutil
import sys
from typing import Dict, List

from . import engine_hosts, engine_repos, images, pusher
from .berth_env import BerthEnv
from .registry import BINARY as REGISTRY_BINARY
from .registry import Registry

STATE_FILE = "berth-host.json"
CONFIG_LINK = os.path.join("berth", "daemon.json")
IMAGE_REPOSITORY = "berth-molecule/{name}"
USAGE = "usage: python -m support.molecule_env up STATE_DIR NAME=IMAGE... | down STATE_DIR"


def _parse_instances(specs: List[str]) -> Dict[str, str]:
    instances = {}
    for spec in specs:
        name, separator, image = spec.partition("=")
        if not (name and separator) or image not in engine_hosts.RECIPES:
            choices = ", ".join(engine_hosts.RECIPES)
            raise SystemExit(f"molecule_env: {spec!r} is not NAME=IMAGE with IMAGE one of {choices}")
        instances[name] = image
    if not instances:
        raise SystemExit(USAGE)
    return instances


def up(state_dir: str, specs: List[str]) -> Dict[str, object]:
    instances = _parse_instances(specs)
    registry_binary = shutil.which(REGISTRY_BINARY)
    if registry_binary is None:
        fix = f"run make setup (apt-get install {REGISTRY_BINARY})"
        raise SystemExit(f"molecule_env: {REGISTRY_BINARY} is missing: {fix}")
    if os.path.exists(os.path.join(state_dir, STATE_FILE)):
        down(state_dir)
    repos = engine_repos.build()
    layouts = {image: engine_hosts.engine_host_images(image) for image in set(instances.values())}
    busybox = images.busybox_images()
    env = BerthEnv()
    try:
        _save_state(state_dir, env, {})
        registry = Registry("plain", state_dir=os.path.join(env.base, "registry"))
        refs = {}
        with registry, registry.client() as client:
            for image, layout in sorted(layouts.items()):
                repository = IMAGE_REPOSITORY.format(name=image)
                pusher.push(client, repository, layout.image("latest"), "latest", "oci")
                refs[image] = registry.reference(repository)
            hub = pusher.push(client, "library/busybox", busybox.image("latest"), "latest", "oci")
            for ref in sorted(refs.values()):
                env.berth("pull", ref, timeout=600)
        result: Dict[str, object] = {
            "berth_config": env.config_path,
            "instances": {},
            "docker_ce_mirror": {"root": repos.root, "fingerprint": repos.fingerprint, "version": repos.version},
            "hub_mirror": {"storage": registry.storage_dir, "busybox_id": hub.image_id},
            "registry_binary": registry_binary,
        }
        for name, image in sorted(instances.items()):
            docker_root = os.path.join(env.base, "instances", name, "docker")
            os.makedirs(docker_root, mode=0o710)
            result["instances"][name] = {"image": refs[image], "docker_root": docker_root}  # type: ignore[index]
        _save_state(state_dir, env, result)
        return result
    except BaseException:
        down(state_dir)
        raise


def _save_state(state_dir: str, env: BerthEnv, result: Dict[str, object]) -> None:
    """STATE_FILE: *result* (what the playbooks and tests read) and what ``down`` needs to find the host again."""
    os.makedirs(os.path.join(state_dir, os.path.dirname(CONFIG_LINK)), exist_ok=True)
    link = os.path.join(state_dir, CONFIG_LINK)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(env.config_path, link)
    state = {**result, "berth_env": {"config_path": env.config_path, "base": env.base, "token": env.token}}
    with open(os.path.join(state_dir, STATE_FILE), "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)


def _attach(saved: Dict[str, str]) -> BerthEnv:
    """The BerthEnv that ``up`` made, from what it saved (BerthEnv itself only creates new hosts)."""
    env = BerthEnv.__new__(BerthEnv)
    env.token = saved["token"]
    env.base = saved["base"]
    env.config_path = saved["config_path"]
    with open(env.config_path, encoding="utf-8") as handle:
        env.settings = json.load(handle)
    return env


def down(state_dir: str) -> List[str]:
    """Remove what ``up`` made; return the problems met on the way (empty when all went)."""
    path = os.path.join(state_dir, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
    except FileNotFoundError:
        return []
    saved = saved["berth_env"]
    problems = []
    if os.path.exists(saved["config_path"]):
        problems = _attach(saved).destroy()
    else:
        shutil.rmtree(saved["base"], ignore_errors=True)
    link = os.path.join(state_dir, CONFIG_LINK)
    if os.path.lexists(link):
        os.unlink(link)
    os.unlink(path)
    return problems


def main(argv: List[str]) -> int:
    if len(argv) >= 3 and argv[0] == "up":
        print(json.dumps(up(argv[1], argv[2:]), indent=2, sort_keys=True))
        return 0
    if len(argv) == 2 and argv[0] == "down":
        problems = down(argv[1])
        for problem in problems:
            print(f"molecule_env: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
