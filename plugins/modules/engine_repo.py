#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: engine_repo
short_description: Manage the docker-ce package repository, upstream or on a mirror
version_added: 0.1.0
description:
  - Writes the docker-ce repository definition itself instead of downloading Docker's C(docker-ce.repo),
    so every URL in it points at O(base_url) - upstream or a mirror of it, which is then really used.
  - On CentOS, RHEL, Rocky, Alma, Oracle Linux and Fedora it writes a yum/dnf C(.repo) file with an explicit
    C(baseurl) for every section Docker publishes (binary, debuginfo and source, per channel), C(gpgcheck=1)
    and C(gpgkey) pointing at the installed key file.
  - On Debian, Ubuntu and Raspbian it writes a deb822 C(.sources) file whose C(Signed-By) names the installed key file.
  - Installs the repository signing key (ASCII-armored) from key content, a URL or a file on the target,
    and checks its fingerprint.
author:
  - Berth maintainers (@berth-containers)
extends_documentation_fragment:
  - berth.containers.attributes
  - berth.containers.attributes.ACTIONGROUP_CONTAINERS
attributes:
  check_mode:
    support: full
    details:
      - Never downloads. When the key comes from a URL and no key file is installed yet, the key is reported as
        a change whose content is not known.
  diff_mode:
    support: full
    details:
      - The repository file's content before and after, and the fingerprint of the key before and after.
  idempotent:
    support: full
options:
  state:
    description:
      - V(present) writes the repository file and installs the key; V(absent) removes both.
    type: str
    choices: [present, absent]
    default: present
  base_url:
    description:
      - The root of Docker's download tree or of a mirror of it; C(/linux/<distribution>/...) is appended.
      - For example V(https://mirrors.aliyun.com/docker-ce) or V(https://mirrors.tuna.tsinghua.edu.cn/docker-ce).
      - V(http://), V(https://), V(ftp://) and V(file://) URLs are accepted.
    type: str
    default: https://download.docker.com
  channel:
    description:
      - The release channel to enable. As with Docker's install script exactly one channel is enabled;
        the other channels' sections are written disabled.
    type: str
    choices: [stable, test, nightly]
    default: stable
  distribution:
    description:
      - Docker's tree to use. Defaults to the one that serves the host, from C(/etc/os-release)
        (Rocky, Alma, Oracle Linux and CentOS Stream use V(centos); RHEL uses V(rhel)).
    type: str
    choices: [centos, rhel, fedora, debian, ubuntu, raspbian]
  release:
    description:
      - For yum/dnf the release directory; defaults to V($releasever), which dnf expands.
        Pass the major version (for example V(9)) when the host's C($releasever) is a minor release such as
        C(9.4), for which Docker publishes no directory.
      - For apt the suite, that is the codename (V(bookworm), V(noble)); defaults to the host's codename.
    type: str
  architectures:
    description:
      - For apt only, the C(Architectures) field (for example V(amd64)). Without it apt uses the host's architectures.
    type: list
    elements: str
  path:
    description:
      - The repository file. Defaults to C(/etc/yum.repos.d/docker-ce.repo) (which replaces a file added with
        C(dnf config-manager --add-repo)) or C(/etc/apt/sources.list.d/docker.sources).
    type: path
  gpg_key:
    description:
      - The repository signing key, as ASCII-armored or binary key content, as an V(https://), V(http://) or
        V(file://) URL, or as an absolute path of a file on the target.
      - Defaults to C(<base_url>/linux/<distribution>/gpg), the key next to the packages.
    type: str
  gpg_fingerprint:
    description:
      - The full fingerprint the key must have (spaces allowed). The run fails, and nothing is written, when the key
        does not match.
      - Defaults to the fingerprint of Docker's signing key (C(9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF CD88))
        when O(gpg_key) is not given, so a mirror cannot substitute its own key; no check otherwise.
      - An empty string disables the check.
    type: str
  gpg_key_path:
    description:
      - Where the key is installed. Defaults to C(/etc/pki/rpm-gpg/docker-ce.asc) for yum/dnf and
        C(/etc/apt/keyrings/docker.asc) for apt (the file Docker's documentation uses).
    type: path
  refresh_gpg_key:
    description:
      - Download the key again even when a key file with the expected fingerprint is installed.
        Without it a key given by URL is downloaded only when the key file is missing or does not match O(gpg_fingerprint).
    type: bool
    default: false
  validate_certs:
    description:
      - Verify the TLS certificate when downloading the key over HTTPS.
    type: bool
    default: true
notes:
  - apt refuses to work when the same repository is configured twice with different keys; the module warns when
    another file in C(/etc/apt/sources.list.d) already points at the same URL (a hand-made C(docker.list)).
  - The written files have mode C(0644); directories are created with mode C(0755).
seealso:
  - module: berth.containers.daemon_json
  - module: berth.containers.engine_info
  - name: Install Docker Engine on CentOS
    description: Docker's instructions for the repository this module writes.
    link: https://docs.docker.com/engine/install/centos/
"""

EXAMPLES = r"""
- name: Use Docker's upstream repository (stable channel)
  berth.containers.engine_repo:

- name: Use a mirror, pinning the release directory to the major version
  berth.containers.engine_repo:
    base_url: https://mirrors.aliyun.com/docker-ce
    release: "{{ ansible_facts['distribution_major_version'] }}"

- name: Use an internal repository signed with the company key
  berth.containers.engine_repo:
    base_url: https://artifacts.example.com/docker-ce
    gpg_key: "{{ lookup('ansible.builtin.file', 'files/company-repo.asc') }}"
    gpg_fingerprint: 0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567

- name: Remove the repository and its key
  berth.containers.engine_repo:
    state: absent
"""

RETURN = r"""
path:
  description: The repository file.
  returned: always
  type: str
  sample: /etc/yum.repos.d/docker-ce.repo
gpg_key_path:
  description: The installed key file.
  returned: always
  type: str
  sample: /etc/pki/rpm-gpg/docker-ce.asc
format:
  description: V(yum) or V(apt).
  returned: always
  type: str
  sample: yum
distribution:
  description: Docker's tree the repository points at.
  returned: always
  type: str
  sample: centos
release:
  description: The release directory (yum) or suite (apt) written.
  returned: always
  type: str
  sample: $releasever
repo_url:
  description: The URL of the enabled channel (for yum with C($releasever)/C($basearch) unexpanded).
  returned: always
  type: str
  sample: https://mirrors.aliyun.com/docker-ce/linux/centos/$releasever/$basearch/stable
content:
  description: The repository file's content after the run (empty with O(state=absent)).
  returned: always
  type: str
gpg_fingerprint:
  description: The fingerprint of the installed key; empty when it is not known (absent, or check mode before a download).
  returned: always
  type: str
  sample: 9DC858229FC7DD38854AE2D88D81803C0EBFCD88
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url

from ansible_collections.berth.containers.plugins.module_utils.engine import openpgp, repo
from ansible_collections.berth.containers.plugins.module_utils.module_run import finish
from ansible_collections.berth.containers.plugins.module_utils.runtime import fsutil
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import BerthError, InvalidArgument

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
APT_LIST_DIR = "/etc/apt/sources.list.d"
UNKNOWN_KEY = "(a key that check mode does not download)"


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None


def _os_release() -> Dict[str, str]:
    for path in OS_RELEASE_PATHS:
        raw = _read(path)
        if raw is not None:
            return repo.parse_os_release(raw.decode("utf-8", "replace"))
    raise InvalidArgument("the host has no /etc/os-release: set distribution and release")


class EngineRepo:
    """Work out, and if asked apply, the repository file and key file."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.warnings: List[str] = []
        os_release: Optional[Dict[str, str]] = None
        self.distribution = self.params["distribution"]
        if not self.distribution:
            os_release = _os_release()
            self.distribution = repo.distribution_from_os_release(os_release)
        self.format = repo.repository_format(self.distribution)
        release = self.params["release"]
        if not release:
            if self.format == "yum":
                release = "$releasever"
            else:
                release = repo.apt_suite_from_os_release(os_release or _os_release())
        self.release = release
        self.base_url = repo.normalize_base_url(self.params["base_url"])
        yum = self.format == "yum"
        self.path = self.params["path"] or (repo.YUM_REPO_PATH if yum else repo.APT_SOURCES_PATH)
        self.key_path = self.params["gpg_key_path"] or (repo.YUM_KEY_PATH if yum else repo.APT_KEY_PATH)
        self.key_source = self.params["gpg_key"] or repo.default_key_url(self.base_url, self.distribution)
        fingerprint = self.params["gpg_fingerprint"]
        if fingerprint is None and not self.params["gpg_key"]:
            fingerprint = repo.DOCKER_GPG_FINGERPRINT
        self.fingerprint = openpgp.normalize_fingerprint(fingerprint) if fingerprint else None

    # The repository file -------------------------------------------------
    def render(self) -> str:
        channel = self.params["channel"]
        if self.format == "yum":
            return repo.render_yum_repo(
                self.base_url, self.distribution, channel, f"file://{self.key_path}", release=self.release
            )
        return repo.render_apt_sources(
            self.base_url,
            self.distribution,
            self.release,
            channel,
            signed_by=self.key_path,
            architectures=self.params["architectures"],
        )

    def repo_url(self) -> str:
        tree = repo.tree_url(self.base_url, self.distribution)
        if self.format == "yum":
            return f"{tree}/{self.release}/$basearch/{self.params['channel']}"
        return tree

    # The key ---------------------------------------------------------------
    def _installed_key(self) -> Optional[openpgp.PublicKey]:
        raw = _read(self.key_path)
        if raw is None:
            return None
        try:
            key = openpgp.parse_public_key(raw, f"the installed key {self.key_path}")
        except BerthError:
            return None
        if self.fingerprint and self.fingerprint not in (key.fingerprint, *key.subkey_fingerprints):
            return None
        return key

    def _fetch(self, url: str) -> bytes:
        if url.startswith("file://"):
            raw = _read(url[len("file://") :])
            if raw is None:
                raise InvalidArgument(f"the key file {url} does not exist on the target")
            return raw
        response, info = fetch_url(self.module, url, timeout=30)
        status = info.get("status", -1)
        if status != 200 or response is None:
            raise InvalidArgument(
                f"cannot download the GPG key from {url}: HTTP {status} {info.get('msg', '')}".rstrip()
                + " (check base_url, or give gpg_key as content or a file)"
            )
        return response.read()

    def desired_key(self, installed: Optional[openpgp.PublicKey]) -> Optional[openpgp.PublicKey]:
        """The key to install; None when only a download would tell (check mode)."""
        source = self.key_source
        what = "the GPG key"
        if source.lstrip().startswith("-----BEGIN"):
            raw = source.encode("utf-8", "surrogateescape")
        elif source.startswith(("http://", "https://", "ftp://", "file://")):
            if installed is not None and not self.params["refresh_gpg_key"]:
                return installed
            if self.module.check_mode:
                return None
            what = f"the GPG key from {source}"
            raw = self._fetch(source)
        elif source.startswith("/"):
            what = f"the GPG key file {source}"
            raw = _read(source)
            if raw is None:
                raise InvalidArgument(f"gpg_key {source} does not exist on the target")
        else:
            raise InvalidArgument(
                "gpg_key must be armored key content ('-----BEGIN PGP PUBLIC KEY BLOCK-----...'), "
                "an http(s):// or file:// URL, or an absolute path on the target"
            )
        key = openpgp.parse_public_key(raw, what)
        if self.fingerprint:
            openpgp.check_fingerprint(key, self.fingerprint, what)
        return key

    # Applying --------------------------------------------------------------
    def _write(self, path: str, data: bytes) -> None:
        fsutil.makedirs(os.path.dirname(path), 0o755)
        fsutil.write_atomic(path, data, mode=0o644)
        if self.module.selinux_enabled():
            self.module.set_default_selinux_context(path, False)

    def _remove(self, path: str) -> bool:
        if not os.path.lexists(path):
            return False
        if not self.module.check_mode:
            os.unlink(path)
        return True

    def _warn_about_duplicates(self) -> None:
        if self.format != "apt" or not os.path.isdir(APT_LIST_DIR):
            return
        uri = repo.tree_url(self.base_url, self.distribution)
        for name in sorted(os.listdir(APT_LIST_DIR)):
            path = os.path.join(APT_LIST_DIR, name)
            if not name.endswith(".list") or path == self.path:
                continue
            lines = repo.conflicting_apt_lines((_read(path) or b"").decode("utf-8", "replace"), uri)
            if lines:
                self.warnings.append(
                    f"{path} also configures {uri} ({lines[0]!r}); apt fails when one repository has two "
                    "different Signed-By keys: remove that file"
                )

    def present(self) -> Tuple[bool, Dict[str, Any], List[Dict[str, str]]]:
        content = self.render()
        before_raw = _read(self.path)
        before = before_raw.decode("utf-8", "replace") if before_raw is not None else ""
        installed = self._installed_key()
        installed_raw = _read(self.key_path)
        key = self.desired_key(installed)
        key_changed = key is None or installed_raw != key.armored
        repo_changed = before_raw is None or before != content
        if not self.module.check_mode:
            if key_changed and key is not None:
                self._write(self.key_path, key.armored)
            if repo_changed:
                self._write(self.path, content.encode("utf-8"))
        self._warn_about_duplicates()
        before_key = self._describe_key(installed_raw)
        after_key = self._describe_key(key.armored) if key is not None else UNKNOWN_KEY
        diff = [
            {"before_header": self.path, "after_header": self.path, "before": before, "after": content},
            {
                "before_header": self.key_path,
                "after_header": self.key_path,
                "before": before_key,
                "after": after_key,
            },
        ]
        result = {"content": content, "gpg_fingerprint": key.fingerprint if key else ""}
        return repo_changed or key_changed, result, diff

    def _describe_key(self, raw: Optional[bytes]) -> str:
        if raw is None:
            return ""
        try:
            key = openpgp.parse_public_key(raw, self.key_path)
        except BerthError as exc:
            return f"(unusable key: {exc})\n"
        return f"OpenPGP public key {key.fingerprint}\n"

    def absent(self) -> Tuple[bool, Dict[str, Any], List[Dict[str, str]]]:
        before_raw = _read(self.path)
        key_raw = _read(self.key_path)
        changed = self._remove(self.path)
        changed = self._remove(self.key_path) or changed
        diff = [
            {
                "before_header": self.path,
                "after_header": self.path,
                "before": (before_raw or b"").decode("utf-8", "replace"),
                "after": "",
            },
            {
                "before_header": self.key_path,
                "after_header": self.key_path,
                "before": self._describe_key(key_raw),
                "after": "",
            },
        ]
        return changed, {"content": "", "gpg_fingerprint": ""}, diff

    def run(self) -> Dict[str, Any]:
        if self.format == "yum" and self.params["architectures"]:
            self.warnings.append("architectures applies to apt sources only; yum/dnf use $basearch")
        if self.params["state"] == "present":
            changed, result, diff = self.present()
        else:
            changed, result, diff = self.absent()
        result.update(
            changed=changed,
            path=self.path,
            gpg_key_path=self.key_path,
            format=self.format,
            distribution=self.distribution,
            release=self.release,
            repo_url=self.repo_url(),
        )
        if self.module._diff:
            result["diff"] = [entry for entry in diff if entry["before"] != entry["after"]]
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "base_url": {"type": "str", "default": repo.UPSTREAM_BASE_URL},
            "channel": {"type": "str", "choices": list(repo.CHANNELS), "default": "stable"},
            "distribution": {"type": "str", "choices": list(repo.DISTRIBUTIONS)},
            "release": {"type": "str"},
            "architectures": {"type": "list", "elements": "str"},
            "path": {"type": "path"},
            "gpg_key": {"type": "str", "no_log": False},
            "gpg_fingerprint": {"type": "str"},
            "gpg_key_path": {"type": "path"},
            "refresh_gpg_key": {"type": "bool", "default": False},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    finish(module, EngineRepo)


if __name__ == "__main__":
    main()
