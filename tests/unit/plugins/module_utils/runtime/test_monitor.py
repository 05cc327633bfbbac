"""The supervisor loop as a real process: json-file logs, exit status, restart rules."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import monitor

MONITOR = monitor.__file__


def supervise(tmp_path, script: str, **options: str) -> dict:
    """Start `sh -c script` with pipes, then turn this forked child into the monitor."""
    log = tmp_path / "c-json.log"
    marker = tmp_path / "after-exec"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            child = subprocess.Popen(["/bin/sh", "-c", script], stdout=out_w, stderr=err_w, stdin=subprocess.DEVNULL)
            os.close(out_w)
            os.close(err_w)
            os.set_inheritable(out_r, True)
            os.set_inheritable(err_r, True)
            args = {
                "dir": str(tmp_path),
                "log": str(log),
                "pid": str(child.pid),
                "out": str(out_r),
                "err": str(err_r),
                "id": "c",
                "python": "/bin/sh",
                "lib": "/nonexistent",
                "config": str(tmp_path / "daemon.json"),
                **options,
            }
            # The monitor ends by exec'ing the heavy entry point; /bin/sh -I fails fast there,
            # so point "python" at a shell that records that it was reached.
            args["python"] = str(tmp_path / "fake-python")
            with open(args["python"], "w") as handle:
                handle.write(f'#!/bin/sh\necho "$@" > {marker}\n')
            os.chmod(args["python"], 0o755)
            os.execv(sys.executable, [sys.executable, "-I", "-S", MONITOR] + [f"{k}={v}" for k, v in args.items()])
        finally:
            os._exit(99)
    status = os.waitpid(pid, 0)[1]
    assert os.waitstatus_to_exitcode(status) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    exit_record = json.loads((tmp_path / "exit.json").read_text())
    return {"records": records, "exit": exit_record, "next": marker.read_text().split()}


def test_logs_and_exit_code(tmp_path) -> None:
    result = supervise(tmp_path, "echo hello; echo oops >&2; printf 'no newline'; exit 3")
    lines = [(r["stream"], r["log"]) for r in result["records"]]
    assert ("stdout", "hello\n") in lines
    assert ("stderr", "oops\n") in lines
    assert ("stdout", "no newline") in lines
    assert all(r["time"].endswith("Z") and len(r["time"]) == 30 for r in result["records"])
    assert result["exit"]["exit_code"] == 3
    assert result["exit"]["oom_killed"] is False
    # Without a restart policy the monitor hands over to the clean-up step.
    assert result["next"][-3:-1] == ["cleanup", "c"]


def test_killed_by_signal_is_128_plus_signal(tmp_path) -> None:
    result = supervise(tmp_path, "kill -9 $$")
    assert result["exit"]["exit_code"] == 137


def test_long_lines_are_split_like_docker(tmp_path) -> None:
    result = supervise(tmp_path, "head -c 40000 /dev/zero | tr '\\0' x; echo")
    stdout = [r["log"] for r in result["records"] if r["stream"] == "stdout"]
    assert "".join(stdout) == "x" * 40000 + "\n"
    assert [len(part) for part in stdout][:2] == [monitor.MAX_LINE, monitor.MAX_LINE]


def test_restart_policy_hands_over_to_restart(tmp_path) -> None:
    result = supervise(tmp_path, "exit 1", restart="on-failure:2", restarts="1")
    assert result["next"][-3] == "restart"


def test_stop_request_suppresses_restart(tmp_path) -> None:
    (tmp_path / "stop-requested").write_text("")
    result = supervise(tmp_path, "exit 0", restart="always")
    assert result["next"][-3] == "cleanup"


def test_log_rotation_keeps_max_files(tmp_path) -> None:
    supervise(
        tmp_path,
        "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done",
        **{"max-size": "2000", "max-file": "3"},
    )
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("c-json.log"))
    assert names == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    assert os.path.getsize(tmp_path / "c-json.log") <= 2000
    last = json.loads((tmp_path / "c-json.log").read_text().splitlines()[-1])
    assert last["log"] == "line 199\n"


@pytest.mark.parametrize(
    ("policy", "code", "restarts", "stopped", "expected"),
    [
        ("no", 1, 0, False, False),
        ("always", 0, 5, False, True),
        ("always", 0, 0, True, False),
        ("unless-stopped", 1, 0, False, True),
        ("on-failure", 0, 0, False, False),
        ("on-failure", 2, 9, False, True),
        ("on-failure:3", 2, 2, False, True),
        ("on-failure:3", 2, 3, False, False),
    ],
)
def test_should_restart(policy: str, code: int, restarts: int, stopped: bool, expected: bool) -> None:
    assert monitor.should_restart(policy, code, restarts, stopped) is expected


def test_restart_delay_doubles_and_is_capped() -> None:
    assert monitor.restart_delay(0) == pytest.approx(0.1)
    assert monitor.restart_delay(3) == pytest.approx(0.8)
    assert monitor.restart_delay(30) == 60.0


def test_monitor_imports_only_builtins() -> None:
    body = f"open({MONITOR!r}).read().split('if __name__')[0]"
    code = f"import sys; before = set(sys.modules); exec({body}); print(sorted(set(sys.modules) - before))"
    output = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "['_json', 'errno', 'select']"
