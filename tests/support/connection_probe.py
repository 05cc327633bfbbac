"""Drive the berth connection plugin outside a play: ``python connection_probe.py REQUEST.json``.

The request names the connection variables (as an inventory would) and the
steps; each step calls one method of a freshly loaded plugin, the way
Ansible's action plugins call it, and its outcome is printed as JSON:

* ``{"op": "exec", "cmd": "...", "in_data": "..."}`` -> ``rc``, ``stdout``, ``stderr``
* ``{"op": "put", "src": LOCAL, "dest": IN_CONTAINER}``
* ``{"op": "fetch", "src": IN_CONTAINER, "dest": LOCAL}``

A step that raises gives ``{"ok": false, "error": CLASS, "message": ...}``.
Run in its own interpreter because the plugin loader installs Ansible's
collection finder, which must not leak into the test process.
"""

import json
import sys
from typing import Any, Dict, List


def main(request_path: str) -> int:
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader, init_plugin_loader

    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    init_plugin_loader()
    outcomes: List[Dict[str, Any]] = []
    for step in request["steps"]:
        play_context = PlayContext()
        play_context.executable = request["variables"].get("ansible_shell_executable", "/bin/sh")
        connection = connection_loader.get("berth.containers.berth", play_context)
        connection.set_options(var_options=request["variables"])
        try:
            if step["op"] == "exec":
                in_data = step.get("in_data")
                rc, out, err = connection.exec_command(
                    step["cmd"], in_data=in_data.encode() if in_data is not None else None
                )
                outcome: Dict[str, Any] = {"ok": True, "rc": rc, "stdout": out.decode(), "stderr": err.decode()}
            elif step["op"] == "put":
                connection.put_file(step["src"], step["dest"])
                outcome = {"ok": True}
            elif step["op"] == "fetch":
                connection.fetch_file(step["src"], step["dest"])
                outcome = {"ok": True}
            else:
                raise ValueError(f"unknown op {step['op']!r}")
            outcome["remote_user"] = connection.get_option("remote_user")
        except Exception as exc:  # the outcome is the test's evidence
            outcome = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        finally:
            connection.close()
        outcomes.append(outcome)
    json.dump(outcomes, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
