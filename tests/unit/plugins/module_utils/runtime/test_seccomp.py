"""Docker's default seccomp profile: rule selection, compilation, and its effect in a filtered child."""

import ctypes
import errno
import json
import os
import platform

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import capabilities, libc, seccomp

DOCKER = capabilities.mask_of(capabilities.DOCKER_DEFAULT)
DOCKER_NAMES = capabilities.names_of(DOCKER)


def _rules_for(name):
    return [rule for rule in seccomp.RULES if name in rule.names]


def test_profile_shape():
    allowed = seccomp.RULES[0].names
    assert len(allowed) > 350
    for name in ("read", "execve", "close", "capset", "setresuid", "seccomp"):
        assert name in allowed
    for name in (
        "mount",
        "unshare",
        "setns",
        "keyctl",
        "init_module",
        "finit_module",
        "ptrace",
        "reboot",
        "kexec_load",
    ):
        assert name not in allowed


@pytest.mark.parametrize(
    ("name", "capability", "arch"),
    [
        ("mount", "CAP_SYS_ADMIN", "amd64"),
        ("finit_module", "CAP_SYS_MODULE", "amd64"),
        ("chroot", "CAP_SYS_CHROOT", "amd64"),
    ],
)
def test_capability_gated_rules(name, capability, arch):
    gated = [rule for rule in _rules_for(name) if rule.caps]
    assert gated
    assert all(seccomp.applicable(rule, [capability], arch, (6, 1)) for rule in gated)
    assert not any(seccomp.applicable(rule, [], arch, (6, 1)) for rule in gated)


def test_clone_and_clone3_without_sys_admin():
    clone = [rule for rule in _rules_for("clone") if rule.args]
    amd64 = [rule for rule in clone if seccomp.applicable(rule, DOCKER_NAMES, "amd64", (6, 1))]
    assert len(amd64) == 1
    assert amd64[0].args == ((0, "MASKED_EQ", 0x7E020000),)
    (clone3,) = [rule for rule in _rules_for("clone3") if rule.errno]
    assert clone3.errno == errno.ENOSYS
    assert seccomp.applicable(clone3, DOCKER_NAMES, "amd64", (6, 1))
    assert not seccomp.applicable(clone3, ["CAP_SYS_ADMIN"], "amd64", (6, 1))


def test_min_kernel_and_arch_filters():
    (ptrace,) = [rule for rule in _rules_for("ptrace") if rule.min_kernel]
    assert seccomp.applicable(ptrace, [], "amd64", (4, 8))
    assert not seccomp.applicable(ptrace, [], "amd64", (4, 4))
    (arch_prctl,) = _rules_for("arch_prctl")
    assert seccomp.applicable(arch_prctl, [], "amd64", (6, 1))
    assert not seccomp.applicable(arch_prctl, [], "arm64", (6, 1))


needs_libseccomp = pytest.mark.skipif(not seccomp.available(), reason="libseccomp2 is not installed")


@needs_libseccomp
def test_status_for_berth_info():
    status = seccomp.status()
    assert status["enabled"] is True
    assert str(status["library"]).startswith("libseccomp 2.")


@needs_libseccomp
def test_compiled_program_is_cached_in_memory_and_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(seccomp, "_programs", {})
    program = seccomp.default_program(DOCKER, str(tmp_path))
    assert program
    assert len(program) % 8 == 0
    (cached,) = list(tmp_path.iterdir())
    assert cached.read_bytes() == program
    assert seccomp.default_program(DOCKER, str(tmp_path)) is program
    monkeypatch.setattr(seccomp, "_programs", {})
    monkeypatch.setattr(seccomp, "_compile", lambda *args: pytest.fail("compiled although cached"))
    assert seccomp.default_program(DOCKER, str(tmp_path)) == program


@needs_libseccomp
def test_programs_differ_with_capabilities(monkeypatch):
    monkeypatch.setattr(seccomp, "_programs", {})
    with_admin = seccomp.default_program(DOCKER | 1 << capabilities.NUMBERS["CAP_SYS_ADMIN"])
    assert with_admin != seccomp.default_program(DOCKER)


def _run_filtered(program, probes):
    """Install *program* in a forked child (no_new_privs, no root needed) and return each probe's errno."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
            libc.set_seccomp_filter(program)
            raw = ctypes.CDLL(None, use_errno=True)
            raw.syscall.restype = ctypes.c_long
            results = {}
            for name, number, args in probes:
                ctypes.set_errno(0)
                result = raw.syscall(ctypes.c_long(number), *[ctypes.c_long(arg) for arg in args])
                results[name] = 0 if result >= 0 else ctypes.get_errno()
            os.write(write_fd, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@needs_libseccomp
@pytest.mark.skipif(platform.machine() != "x86_64", reason="system call numbers below are x86_64's")
def test_filter_denies_what_docker_denies():
    """R14: unshare(CLONE_NEWUSER) and mount get EPERM, clone3 ENOSYS, keyctl EPERM; getpid works."""
    program = seccomp.default_program(DOCKER)
    results = _run_filtered(
        program,
        [
            ("getpid", 39, ()),
            ("unshare_user", 272, (libc.CLONE_NEWUSER,)),
            ("mount", 165, (0, 0, 0, 0, 0)),
            ("clone3", 435, (0, 0)),
            ("keyctl", 250, (0, 0, 0, 0, 0)),
            ("open_by_handle_at", 304, (0, 0, 0)),
            ("finit_module", 313, (-1, 0, 0)),
            ("socket_vsock", 41, (40, 1, 0)),
        ],
    )
    assert results == {
        "getpid": 0,
        "unshare_user": errno.EPERM,
        "mount": errno.EPERM,
        "clone3": errno.ENOSYS,
        "keyctl": errno.EPERM,
        "open_by_handle_at": errno.EPERM,
        "finit_module": errno.EPERM,
        "socket_vsock": errno.EPERM,
    }
