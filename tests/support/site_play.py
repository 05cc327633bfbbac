"""Run the collection's playbooks (``berth.containers.site``...) against an inventory, as ``make demo`` does.

The collection is found through the checkout's ``.cache/collections`` link
(the one scripts/test, scripts/demo and tests/conftest.py keep), so the
playbooks run as collection playbooks: their short role names resolve inside
the collection.  Ansible's temporary files stay in the caller's work directory.
"""

import os
import subprocess
import sys
from typing import Dict, List

from .ansible_run import PlayRun, _collections_path

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def environment(work: str) -> Dict[str, str]:
    config = os.path.join(work, "ansible.cfg")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write("[defaults]\n")
    return dict(
        os.environ,
        ANSIBLE_CONFIG=config,
        ANSIBLE_COLLECTIONS_PATH=_collections_path(),
        ANSIBLE_LOCAL_TEMP=os.path.join(work, "local"),
        ANSIBLE_REMOTE_TEMP=os.path.join(work, "remote"),
        ANSIBLE_NOCOLOR="1",
    )


def run_playbook(work: str, inventory: str, playbook: str = "berth.containers.site", *options: str,
                 timeout: float = 900) -> PlayRun:  # fmt: skip
    """``ansible-playbook -i INVENTORY PLAYBOOK OPTIONS``; the outcome with its PLAY RECAP (``.recap()``)."""
    argv: List[str] = [ANSIBLE_PLAYBOOK, "-i", inventory, *options, playbook]
    done = subprocess.run(argv, env=environment(work), capture_output=True, text=True, timeout=timeout, check=False)
    return PlayRun(done.returncode, done.stdout + done.stderr, {})
