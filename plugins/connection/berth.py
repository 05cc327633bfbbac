# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection plugin: run Ansible tasks inside containers of Berth's bundled runtime."""

DOCUMENTATION = r"""
name: berth
short_description: Run tasks inside containers of Berth's bundled runtime
version_added: 0.1.0
description:
  - Runs commands in, and copies files to and from, a running container of Berth's daemonless runtime on the
    controller host.
  - Each command joins the container's namespaces and cgroup directly (the runtime's exec, as C(berth exec) does),
    with the container's capabilities, seccomp filter and C(no_new_privs) setting. No daemon and no command line
    tool is involved.
  - Files are copied by a reader or writer process that runs B(inside) the container, as the connection's user,
    with the data streamed through a pipe, so there is no size limit, paths are resolved by the kernel in the
    container's own root (a symlink in the container can never lead to a host file), and files get the owner
    that user gives them, as over SSH.
author:
  - Berth maintainers (@berth-containers)
options:
  remote_addr:
    description:
      - The name or ID (or a unique ID prefix) of the container.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_berth_host
  remote_user:
    description:
      - The user commands run as in the container (a name or uid, optionally C(:group) or C(:gid)), like
        C(berth exec --user).
      - When not set, the user the container is configured with (its C(User), root when that is empty), the way
        C(berth exec) chooses; Ansible is told its name so that C(become) and temporary files work as for SSH.
    type: str
    vars:
      - name: ansible_user
      - name: ansible_berth_user
    ini:
      - section: defaults
        key: remote_user
    env:
      - name: ANSIBLE_REMOTE_USER
    cli:
      - name: user
    keyword:
      - name: remote_user
  berth_config:
    description:
      - The runtime's configuration file (C(daemon.json) keys C(data-root), C(exec-root)...) that knows the container.
      - When not set, C(/etc/berth/daemon.json).
    type: path
    vars:
      - name: ansible_berth_config
    env:
      - name: BERTH_CONFIG
    ini:
      - section: berth_connection
        key: config
  berth_extra_env:
    description:
      - Environment variables added to the container's own for every command (a value here wins over the
        container's).
    type: dict
    default: {}
    vars:
      - name: ansible_berth_extra_env
  working_dir:
    description:
      - The directory commands start in. When not set, the container's working directory.
      - Ansible changes to the directories it needs itself; this matters for C(raw) tasks.
    type: str
    vars:
      - name: ansible_berth_working_dir
  privileged:
    description:
      - Run commands with all capabilities and no seccomp filter, like C(berth exec --privileged).
    type: bool
    default: false
    vars:
      - name: ansible_berth_privileged
  timeout:
    description:
      - Seconds to wait for privilege escalation (C(become)) to ask for its password or to succeed.
    type: int
    default: 10
    vars:
      - name: ansible_berth_timeout
    env:
      - name: ANSIBLE_TIMEOUT
    ini:
      - section: defaults
        key: timeout
    cli:
      - name: timeout
extends_documentation_fragment:
  - connection_pipelining
notes:
  - The controller must run as root and be the host the container runs on (the runtime's state is root's).
  - The container must be running; a missing or stopped container fails the connection with a message that says so.
  - C(become) with C(sudo) or C(su) from a non-root user needs set-uid programs to work, and Berth starts
    containers with C(no_new_privs) on (unlike Docker) except systemd containers (C(systemd=true), or a
    C(/sbin/init) command). In other containers connect as C(root), or create the container with C(systemd=true).
  - Every command and every file transfer forks a process that joins the container; Ansible's worker processes are
    single-threaded, and from a multi-threaded process the runtime's exec runs in a fresh helper process instead.
"""

EXAMPLES = r"""
# inventory.yml
# all:
#   hosts:
#     web1:
#       ansible_connection: berth.containers.berth
#       ansible_python_interpreter: /usr/bin/python3
#     app:
#       ansible_connection: berth.containers.berth
#       ansible_host: 3f2a9c       # an ID prefix works too
#       ansible_user: deploy       # commands run as deploy; become: true escalates with sudo
#       ansible_berth_extra_env:
#         http_proxy: http://proxy.example.com:3128
"""

import contextlib
import os
import pty
import time
import typing as t

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.berth.containers.plugins.module_utils.runtime import config as runtime_config
from ansible_collections.berth.containers.plugins.module_utils.runtime import exec_io
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import BerthError
from ansible_collections.berth.containers.plugins.module_utils.runtime.process import ExecFailed

display = Display()

# Positional parameters keep the path out of the shell's parsing: "$1" is used as it is.
_WRITER = 'cat > "$1"'
_READER = 'cat < "$1"'


def configured_user_name(configured: str, passwd: t.Optional[bytes]) -> str:
    """The name Ansible should know for a container's ``User`` (``""`` is root; a uid is looked up)."""
    from ansible_collections.berth.containers.plugins.module_utils.runtime import users

    user = configured.partition(":")[0]
    if not user:
        return "root"
    if not user.isdigit():
        return user
    for entry in users.parse_passwd(passwd or b""):
        if str(entry.uid) == user:
            return entry.name
    return user


def read_container_file(pid: int, path: str) -> t.Optional[bytes]:
    """A small file of a running container, resolved in its root (never through a symlink to the host)."""
    from ansible_collections.berth.containers.plugins.module_utils.runtime import rootfs, users

    try:
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd, _resolved = rootfs.open_in_root(root, path)
    except OSError:
        return None
    finally:
        os.close(root)
    try:
        return users.read_bounded(f"/proc/self/fd/{fd}")
    except BerthError:
        return None
    finally:
        os.close(fd)


class Connection(ConnectionBase):
    """Commands and file transfers through the runtime's exec into a running berth container."""

    transport = "berth.containers.berth"
    has_pipelining = True

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._runtime: t.Any = None
        self._container: t.Any = None
        self._exec_user: t.Optional[str] = None

    # -- options and the remote user ------------------------------------------------------
    def set_options(
        self,
        task_keys: t.Optional[t.Dict[str, t.Any]] = None,
        var_options: t.Optional[t.Dict[str, t.Any]] = None,
        direct: t.Optional[t.Dict[str, t.Any]] = None,
    ) -> None:
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._runtime = None
        self._exec_user = self.get_option("remote_user")
        if self._exec_user is None:
            # Ansible asks for the remote user (become, ~ expansion) before it runs anything: name it now.
            with contextlib.suppress(Exception):
                container = self._load_runtime().find(self.get_option("remote_addr"))
                if container is not None:
                    self.set_option("remote_user", self._default_user_name(container))

    def _default_user_name(self, container: t.Any) -> str:
        configured = container.effective.get("user") or ""
        passwd = None
        if configured.partition(":")[0].isdigit():
            state = container.observe()
            if state.get("status") == "running" and state.get("pid"):
                passwd = read_container_file(state["pid"], "/etc/passwd")
        return configured_user_name(configured, passwd)

    def _load_runtime(self) -> t.Any:
        if self._runtime is None:
            from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime

            self._runtime = Runtime(runtime_config.load(self.get_option("berth_config")))
        return self._runtime

    # -- connecting ------------------------------------------------------------------------------
    def _connect(self) -> "Connection":
        if self._connected:
            return self
        name = self.get_option("remote_addr")
        if os.geteuid() != 0:
            raise AnsibleConnectionFailure(
                f"the berth connection to {name} needs root on the controller (the runtime's containers are root's):"
                " run ansible as root"
            )
        try:
            runtime = self._load_runtime()
            container = runtime.find(name)
        except BerthError as exc:
            raise AnsibleConnectionFailure(f"cannot look up berth container {name}: {exc}") from None
        if container is None:
            raise AnsibleConnectionFailure(
                f"no berth container named {name} (runtime configuration {runtime.config.path}): create and start it"
                " first, or set ansible_host to its name or id"
            )
        status = container.observe()["status"]
        if status != "running":
            raise AnsibleConnectionFailure(
                f"berth container {container.name} is not running (it is {status}): start it"
            )
        self._container = container
        if self._exec_user is None and self.get_option("remote_user") is None:
            self.set_option("remote_user", self._default_user_name(container))
        display.vvv(
            f"ESTABLISH BERTH CONNECTION FOR USER: {self.get_option('remote_user')} "
            f"(container {container.id[:12]}, threads in this process: {exec_io.thread_count()})",
            host=name,
        )
        self._connected = True
        return self

    # -- running things ---------------------------------------------------------------------------
    def _executable(self) -> str:
        return self._play_context.executable or "/bin/sh"

    def _request(self, args: t.List[str]) -> exec_io.ExecRequest:
        extra = self.get_option("berth_extra_env") or {}
        env = [f"{key}={to_text(value)}" for key, value in extra.items()] or None
        return exec_io.ExecRequest(
            args=args,
            env=env,
            cwd=self.get_option("working_dir"),
            user=self._exec_user,
            privileged=bool(self.get_option("privileged")),
        )

    def _start(self, args: t.List[str], stdin_fd: t.Optional[int] = None) -> exec_io.ExecProcess:
        """Start *args* in the container; ``ExecFailed`` (126/127) when the command cannot be started."""
        try:
            return exec_io.ExecProcess.start(self._load_runtime(), self._container, self._request(args), stdin_fd)
        except ExecFailed:
            raise
        except BerthError as exc:
            raise AnsibleConnectionFailure(
                f"cannot run a command in berth container {self._container.name}: {exc}"
            ) from None

    def exec_command(
        self, cmd: str, in_data: t.Optional[bytes] = None, sudoable: bool = True
    ) -> t.Tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        args = [self._executable(), "-c", to_text(cmd)]
        display.vvv(f"EXEC {args}", host=self._container.name)
        primary = secondary = None
        if sudoable and self.become and self.become.expect_prompt() and in_data is None:
            # su reads the password from a terminal; sudo -S reads it from a pipe just as well.
            primary, secondary = pty.openpty()
        try:
            try:
                process = self._start(args, stdin_fd=secondary)
            except ExecFailed as exc:
                return exc.exit_code, b"", to_bytes(str(exc)) + b"\n"
            finally:
                if secondary is not None:
                    os.close(secondary)
            try:
                become_out, become_err = self._ensure_become_success(process, primary, sudoable)
                result = process.communicate(in_data)
            finally:
                if process.exit_code is None:
                    process.kill()
        finally:
            if primary is not None:
                os.close(primary)
        return result.exit_code, become_out + result.stdout, become_err + result.stderr

    def _ensure_become_success(
        self, process: exec_io.ExecProcess, primary: t.Optional[int], sudoable: bool
    ) -> t.Tuple[bytes, bytes]:
        """Answer the become password prompt and wait for become's success marker; output seen meanwhile."""
        become = self.become
        if not become or not sudoable or not getattr(become, "_id", None):
            return b"", b""
        timeout = max(1, int(self.get_option("timeout")))
        expect_prompt = become.expect_prompt()
        out = bytearray()
        err = bytearray()
        sent_password = False
        checked = (0, 0)
        deadline = time.monotonic() + timeout
        while not become.check_success(bytes(out)):
            if expect_prompt and (
                become.check_password_prompt(bytes(out[checked[0] :]))
                or become.check_password_prompt(bytes(err[checked[1] :]))
            ):
                if sent_password:
                    raise AnsibleError(
                        self._become_failure("the password was asked for twice (wrong password?)", out, err)
                    )
                checked = (len(out), len(err))
                password = to_bytes(become.get_option("become_pass") or "") + b"\n"
                if primary is not None:
                    os.write(primary, password)
                else:
                    process.write_stdin(password)
                sent_password = True
            if not process.output_open:
                raise AnsibleError(self._become_failure("the command ended", out, err))
            if time.monotonic() >= deadline:
                raise AnsibleConnectionFailure(self._become_failure(f"timed out after {timeout}s", out, err))
            chunk_out, chunk_err = process.read_output(0.1)
            out += chunk_out
            err += chunk_err
        stripped_out = become.strip_become_success(become.strip_become_prompt(bytes(out)))
        return stripped_out, become.strip_become_prompt(bytes(err))

    def _become_failure(self, reason: str, out: bytearray, err: bytearray) -> str:
        message = (
            f"privilege escalation ({self.become.name}) in berth container {self._container.name} failed: {reason}"
        )
        if out:
            message += f"\n>>> Standard Output\n{to_text(bytes(out))}"
        if err:
            message += f"\n>>> Standard Error\n{to_text(bytes(err))}"
        if not self._container.effective.get("systemd") and not self.get_option("privileged"):
            message += (
                "\nNote: this container runs with no_new_privs (Berth's default outside systemd containers), so set-uid"
                " programs such as sudo and su cannot raise privileges: connect as root, or create the container with"
                " systemd=true."
            )
        return message

    # -- files ------------------------------------------------------------------------------------
    @staticmethod
    def _in_container(path: str) -> str:
        """Relative paths are relative to the container's root, as the docker connection does."""
        return os.path.normpath(path if path.startswith("/") else "/" + path)

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        target = self._in_container(out_path)
        display.vvv(f"PUT {in_path} TO {target}", host=self._container.name)
        try:
            source = open(to_bytes(in_path, errors="surrogate_or_strict"), "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise AnsibleFileNotFound(f"file or module does not exist: {to_native(in_path)}") from None
        except OSError as exc:
            raise AnsibleError(f"cannot read {to_native(in_path)}: {exc.strerror}") from None
        with source:
            outcome = self._transfer([self._executable(), "-c", _WRITER, "berth-put", target], stdin=source)
        if outcome.exit_code != 0:
            raise AnsibleError(
                f"failed to transfer {to_native(in_path)} to {target} in berth container {self._container.name}"
                f" (exit {outcome.exit_code}): {to_text(outcome.stderr).strip()}"
            )

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        source = self._in_container(in_path)
        display.vvv(f"FETCH {source} TO {out_path}", host=self._container.name)
        local = to_bytes(out_path, errors="surrogate_or_strict")
        try:
            with open(local, "wb") as sink:
                outcome = self._transfer([self._executable(), "-c", _READER, "berth-fetch", source], stdout=sink)
        except OSError as exc:
            raise AnsibleError(f"cannot write {to_native(out_path)}: {exc.strerror}") from None
        if outcome.exit_code != 0:
            with contextlib.suppress(OSError):
                os.unlink(local)
            raise AnsibleError(
                f"failed to fetch {source} from berth container {self._container.name}"
                f" (exit {outcome.exit_code}): {to_text(outcome.stderr).strip()}"
            )

    def _transfer(
        self, args: t.List[str], stdin: t.Optional[t.IO[bytes]] = None, stdout: t.Optional[t.IO[bytes]] = None
    ) -> exec_io.Completed:
        try:
            process = self._start(args)
        except ExecFailed as exc:
            return exec_io.Completed(exc.exit_code, b"", to_bytes(str(exc)))
        try:
            return process.communicate(stdin, stdout_sink=stdout)
        except BerthError as exc:
            raise AnsibleError(f"file transfer with berth container {self._container.name} failed: {exc}") from None

    # -- lifecycle -----------------------------------------------------------------------------------
    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        self._container = None
        self._connected = False
