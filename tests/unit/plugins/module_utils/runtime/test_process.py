"""The parts of container start-up that are pure logic: validation, environment, command lookup."""

import os
import resource
import threading

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import process
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ContainerError, InvalidArgument
from ansible_collections.berth.containers.plugins.module_utils.runtime.rootfs import RootfsSpec

ROOTFS = RootfsSpec(lowers=("l",), upper="/u", work="/w", merged="/m")


def test_environment_defaults_path_and_home_without_overriding():
    env = process._environment(["A=1", "PATH=/x", "B", "C=a=b", "A=2"], "/home/app")
    assert env == {"A": "2", "PATH": "/x", "B": "", "C": "a=b", "HOME": "/home/app"}
    assert process._environment([], "/")["PATH"] == process.DEFAULT_PATH


def test_look_path(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    data = bin_dir / "data"
    data.write_text("")
    data.chmod(0o644)
    env = {"PATH": f"/nonexistent:{bin_dir}"}
    assert process._look_path("tool", env) == str(tool)
    assert process._look_path(str(tool), env) == str(tool)
    with pytest.raises(process.ExecFailed, match="executable file not found in \\$PATH") as missing:
        process._look_path("nosuch", env)
    assert missing.value.exit_code == 127
    with pytest.raises(process.ExecFailed, match="permission denied") as denied:
        process._look_path("data", env)
    assert denied.value.exit_code == 126
    with pytest.raises(process.ExecFailed) as absolute:
        process._look_path(str(bin_dir / "gone"), env)
    assert absolute.value.exit_code == 127
    with pytest.raises(process.ExecFailed) as directory:
        process._look_path(str(bin_dir), env)
    assert directory.value.exit_code == 126


@pytest.mark.parametrize("cwd", ["/proc/self/fd/7", "/proc", "/a/../proc/1/cwd", "relative"])
def test_working_directories_that_are_refused(cwd):
    """R7: a WorkingDir inside /proc (CVE-2024-21626) is refused before anything starts."""
    with pytest.raises(InvalidArgument):
        process._check_cwd(cwd)


def test_working_directory_is_normalised():
    assert process._check_cwd("/srv/../app/") == "/app"


def test_rlimits_never_above_the_callers_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert process._rlimits({"nofile": (min(soft, 64), min(hard, 128))}) == [
        (resource.RLIMIT_NOFILE, min(soft, 64), min(hard, 128))
    ]
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(InvalidArgument, match="above this host's hard limit"):
            process._rlimits({"nofile": (hard, hard + 1)})
        with pytest.raises(InvalidArgument, match="above this host's hard limit"):
            process._rlimits({"nofile": (1, resource.RLIM_INFINITY)})
    with pytest.raises(InvalidArgument, match="soft limit"):
        process._rlimits({"RLIMIT_CORE": (10, 5)})
    with pytest.raises(InvalidArgument, match="soft limit"):
        process._rlimits({"core": (resource.RLIM_INFINITY, 5)})
    with pytest.raises(InvalidArgument, match="unknown rlimit"):
        process._rlimits({"bogus": (1, 1)})


def test_oom_score_adj_range():
    with pytest.raises(InvalidArgument):
        process._check_oom_score_adj(1001)
    assert process._check_oom_score_adj(1000) == 1000
    assert process._check_oom_score_adj(None) is None


def test_network_modes(tmp_path):
    assert process._open_netns("host") == (0, None)
    assert process._open_netns("none")[0] == process.libc.CLONE_NEWNET
    with pytest.raises(InvalidArgument):
        process._open_netns("bridge")
    with pytest.raises(ContainerError, match="cannot open the network namespace"):
        process._open_netns(str(tmp_path / "missing"))


def test_systemd_and_no_new_privs_defaults():
    plain = process.ContainerSpec(rootfs=ROOTFS, args=["/bin/sh"])
    booted = process.ContainerSpec(rootfs=ROOTFS, args=["/lib/systemd/systemd"])
    assert not plain.is_systemd
    assert process._no_new_privs(plain)
    assert booted.is_systemd
    assert not process._no_new_privs(booted)
    forced = process.ContainerSpec(rootfs=ROOTFS, args=["/bin/sh"], systemd=True, no_new_privs=True)
    assert forced.is_systemd
    assert process._no_new_privs(forced)


def test_exec_spec_inherits_the_containers_security():
    container = process.ContainerSpec(
        rootfs=ROOTFS, args=["sh"], env=["A=1"], cwd="/app", user="app", cap_drop=["ALL"], seccomp=False
    )
    spec = process.ExecSpec.like(container, ["ls"], user="root")
    assert (spec.args, spec.env, spec.cwd, spec.user) == (["ls"], ["A=1"], "/app", "root")
    assert spec.cap_drop == ["ALL"]
    assert spec.seccomp is False
    assert spec.no_new_privs is True


def test_start_time_and_liveness():
    start_time = process.process_start_time(os.getpid())
    assert start_time
    assert start_time > 0
    assert process.is_running(os.getpid(), start_time)
    assert not process.is_running(os.getpid(), start_time + 1)
    assert process.process_start_time(2**22 + 12345) is None


def test_multi_threaded_callers_are_refused():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.raises(ContainerError, match="single-threaded"):
            process._require_single_thread()
    finally:
        stop.set()
        thread.join()


def test_report_carries_docker_exit_codes():
    read_fd, write_fd = os.pipe()
    try:
        code = process._report(write_fd, "stage", process.ExecFailed("exec: nope", 127))
        os.close(write_fd)
        assert code == 127
        assert b'"exit_code": 127' in os.read(read_fd, 65536)
    finally:
        os.close(read_fd)
