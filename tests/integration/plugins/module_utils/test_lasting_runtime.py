"""The container module imports the runtime from its compiled lasting copy, as Ansible really runs it.

The module runs from an AnsiballZ payload (a zip in a temporary directory):
these tests keep the payload of a real task (``ANSIBLE_KEEP_REMOTE_FILES``)
and run it again under ``python -v``, which names the file every module's
code comes from.
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from support.ansible_run import ANSIBLE_PLAYBOOK, _collections_path
from support.berth_env import BerthEnv
from support.registry import Registry

RUNTIME = "ansible_collections.berth.containers.plugins.module_utils.runtime"
TAG = sys.implementation.cache_tag


@pytest.fixture
def env(mirror: Registry) -> Iterator[BerthEnv]:
    berth = BerthEnv(mirrors=[mirror.url])
    yield berth
    assert berth.destroy() == []


def run_kept(env: BerthEnv, args: Dict[str, Any], check: bool = False) -> Tuple[Dict[str, Any], str]:
    """Run one container task through ansible-playbook, keeping its payload; return its result and the payload."""
    work = tempfile.mkdtemp(prefix="berth-lasting-", dir=env.base)
    playbook = os.path.join(work, "play.json")
    task = {"berth.containers.container": {"config": env.config_path, **args}, "register": "out"}
    save = {"ansible.builtin.copy": {"content": "{{ out | to_json }}", "dest": f"{work}/out.json", "mode": "0600"}}
    with open(playbook, "w", encoding="utf-8") as handle:
        json.dump(
            [{"hosts": "localhost", "gather_facts": False, "tasks": [task, {**save, "check_mode": False}]}], handle
        )
    variables = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=_collections_path(),
        ANSIBLE_KEEP_REMOTE_FILES="1",
        ANSIBLE_REMOTE_TEMP=os.path.join(work, "remote"),
        ANSIBLE_LOCAL_TEMP=os.path.join(work, "local"),
    )
    argv = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    completed = subprocess.run(
        [*argv, *(["--check"] if check else []), playbook],
        env=variables,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    with open(os.path.join(work, "out.json"), encoding="utf-8") as handle:
        result = json.load(handle)
    (payload,) = glob.glob(os.path.join(work, "remote", "*", "AnsiballZ_container.py"))
    return result, payload


def lasting_copies(env: BerthEnv) -> List[str]:
    return sorted(glob.glob(os.path.join(env.settings["data-root"], "runtime", "*", "runtime")))


def sources_of_imports(payload: str) -> Tuple[Dict[str, Any], Dict[str, str], str]:
    """Run a kept payload again under ``python -v``: its result, each runtime module's loader, the trace."""
    completed = subprocess.run(
        [sys.executable, "-v", payload], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    origins: Dict[str, str] = {}
    for line in completed.stderr.splitlines():
        found = re.match(rf"import '{re.escape(RUNTIME)}\.(\w+)' # (.*)", line)
        if found:
            origins[found.group(1)] = found.group(2)
    return json.loads(completed.stdout), origins, completed.stderr


def test_the_copy_is_compiled_once_and_later_runs_import_from_it(env: BerthEnv) -> None:
    args = {"name": "lasting", "image": "busybox", "command": ["sleep", "300"], "published_ports": ["127.0.0.1::80"]}
    created, _payload = run_kept(env, args)
    assert created["changed"] is True
    (copy,) = lasting_copies(env)  # installed for the container's monitor (the host had no data root before)

    again, payload = run_kept(env, args)
    assert again["changed"] is False
    assert lasting_copies(env) == [copy]
    sources = sorted(name for name in os.listdir(copy) if name.endswith(".py"))
    compiled = sorted(os.listdir(os.path.join(copy, "__pycache__")))
    assert compiled == sorted(f"{name[:-3]}.{TAG}.pyc" for name in sources), "every runtime module compiled"
    result, origins, trace = sources_of_imports(payload)
    assert result["changed"] is False
    assert result["container"]["State"]["Running"] is True
    for name in ("containers", "images"):
        assert f"code object from '{copy}/__pycache__/{name}.{TAG}.pyc'" in trace, f"{name} unmarshalled, not compiled"
    # What a no-op run needs beyond the config comes from the copy's bytecode, nothing from the zip but
    # the few modules that find the copy (config, errors, fsutil, install).
    for name in ("containers", "images", "store", "spec", "reference", "ports"):
        assert "SourceFileLoader" in origins[name], (name, origins[name])
    from_zip = sorted(name for name, origin in origins.items() if "zipimporter" in origin)
    assert set(from_zip) <= {"config", "errors", "fsutil", "install", "units"}, from_zip
    assert "network" not in origins, "a no-op run imports no network code"


def test_check_mode_and_a_fresh_host_write_no_copy(env: BerthEnv) -> None:
    args = {"name": "never", "image": "busybox", "command": ["sleep", "300"], "state": "absent"}
    result, payload = run_kept(env, args)
    assert result["changed"] is False
    assert lasting_copies(env) == [], "a host without a data root gets no runtime copy from a task that made nothing"

    env.berth("pull", "busybox")
    predicted, payload = run_kept(env, {**args, "state": "started"}, check=True)
    assert predicted["changed"] is True
    assert lasting_copies(env) == [], "check mode installs nothing"
    result, origins, _trace = sources_of_imports(payload)
    assert result["changed"] is True
    assert result["actions"] == predicted["actions"]
    assert "zipimporter" in origins["containers"], "without a copy the payload's own modules serve"
