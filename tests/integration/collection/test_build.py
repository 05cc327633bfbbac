"""The collection builds with ansible-galaxy, installs, and every module's documentation renders."""

import os
import subprocess
import sys
import tarfile

import yaml

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.dirname(sys.executable)


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=300, **kwargs)


def test_build_install_and_document(tmp_path) -> None:
    run(os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), CHECKOUT)
    tarball = tmp_path / "berth-containers-0.1.0.tar.gz"
    assert tarball.is_file()
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert "plugins/module_utils/runtime/containers.py" in names
    assert "galaxy.yml" not in names  # the build writes MANIFEST.json/FILES.json instead
    assert not [name for name in names if name.startswith((".venv", ".cache", "tests/output", ".git/"))]

    installed = tmp_path / "collections"
    run(os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-p", str(installed), str(tarball))
    root = installed / "ansible_collections" / "berth" / "containers"
    assert (root / "MANIFEST.json").is_file()

    modules = sorted(name[:-3] for name in os.listdir(root / "plugins" / "modules") if name.endswith(".py"))
    assert "container" in modules
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_NOCOLOR": "1"}
    for module in modules:
        rendered = run(os.path.join(BIN, "ansible-doc"), f"berth.containers.{module}", env=env)
        assert f"berth.containers.{module}" in rendered.stdout
        assert "EXAMPLES" in rendered.stdout
    listing = run(os.path.join(BIN, "ansible-doc"), "-l", "berth.containers", env=env).stdout
    assert sorted(line.split()[0].split(".")[-1] for line in listing.splitlines() if line.strip()) == modules
    group = yaml.safe_load((root / "meta" / "runtime.yml").read_text())["action_groups"]["containers"]
    assert sorted(group) == modules
