"""Image references, parsed and normalised exactly like Docker's.

``nginx`` means ``docker.io/library/nginx:latest``; ``localhost:5000/x`` is
repository ``x`` on the registry ``localhost:5000``; a reference may carry a
tag and a digest at once (the digest decides what is pulled, the tag is kept
for display).  The grammar is distribution/reference's (``reference.go``,
``regexp.go``) and the normalisation its ``splitDockerDomain``
(RUNTIME-REFERENCE §1.1-1.2), so a name means in Berth what it means in
``docker pull``.
"""

import re
from typing import NamedTuple, Optional, Tuple

from .digest import validate_digest
from .errors import InvalidArgument, InvalidReference

DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_LEGACY_DOMAIN = "index.docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
OFFICIAL_NAMESPACE = "library/"
DEFAULT_TAG = "latest"
# distribution/reference RepositoryNameTotalLengthMax, checked on the path.
MAX_PATH_LENGTH = 255

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = f"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6_ADDRESS = r"\[[a-fA-F0-9:]+\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6_ADDRESS})"

_PATH_RE = re.compile(f"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?", re.ASCII)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_IMAGE_ID_RE = re.compile(r"[a-f0-9]{64}")


class Reference(NamedTuple):
    """A normalised image reference.  Build it with :func:`parse`."""

    domain: str
    path: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @property
    def name(self) -> str:
        """``docker.io/library/nginx``: the repository, fully qualified."""
        return f"{self.domain}/{self.path}"

    @property
    def repository(self) -> str:
        """The repository name as the registry API knows it (``library/nginx``)."""
        return self.path

    @property
    def familiar(self) -> str:
        """The repository as ``docker images`` shows it (``nginx``, ``localhost:5000/x``)."""
        if self.domain != DOCKER_HUB_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_NAMESPACE) and "/" not in self.path[len(OFFICIAL_NAMESPACE) :]:
            return self.path[len(OFFICIAL_NAMESPACE) :]
        return self.path

    @property
    def display(self) -> str:
        """The short form with tag and digest, for messages (``nginx:latest``)."""
        return self.familiar + self._suffix()

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def api_host(self) -> str:
        """The host:port API requests go to (Docker Hub's names live on registry-1.docker.io)."""
        return DOCKER_HUB_API_HOST if self.domain == DOCKER_HUB_DOMAIN else self.domain

    @property
    def is_docker_hub(self) -> bool:
        return self.domain == DOCKER_HUB_DOMAIN

    def with_tag(self, tag: str) -> "Reference":
        """The same repository with *tag* and no digest."""
        return self._replace(tag=_checked_tag(tag, f"{self.name}:{tag}"), digest=None)

    def with_digest(self, digest: str) -> "Reference":
        """The same repository and tag, pinned to *digest*."""
        try:
            validate_digest(digest)
        except InvalidArgument as exc:
            raise InvalidReference(f"invalid reference {self.name}@{digest}: {exc}") from None
        return self._replace(digest=digest)

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def parse(text: str) -> Reference:
    """Parse and normalise *text*; raise :class:`InvalidReference` naming the rule broken."""
    if not isinstance(text, str) or not text:
        raise InvalidReference(f"invalid reference {text!r}: an image reference must be a non-empty string")
    if _IMAGE_ID_RE.fullmatch(text):
        raise InvalidReference(
            f"invalid reference {text!r}: a 64-character hexadecimal string is an image ID, not a repository name"
        )
    name, at, digest = text.partition("@")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    domain, path = _split_domain(name)

    def broken(rule: str) -> InvalidReference:
        return InvalidReference(f"invalid reference {text!r}: {rule}")

    if not name or name.endswith("/"):
        raise broken("the repository name is empty")
    if not _DOMAIN_RE.fullmatch(domain):
        raise broken(f"{domain!r} is not a valid registry host[:port]")
    if path.lower() != path:
        raise broken(f"repository name {path!r} must be lowercase")
    if not _PATH_RE.fullmatch(path):
        raise broken(
            f"repository name {path!r} must be lowercase letters and digits in '/'-separated components, "
            "separated inside a component by '.', '_', '__' or dashes"
        )
    if len(path) > MAX_PATH_LENGTH:
        raise broken(f"repository name must not be more than {MAX_PATH_LENGTH} characters")
    if tag is not None:
        _checked_tag(tag, text)
    if at:
        try:
            validate_digest(digest)
        except InvalidArgument as exc:
            raise broken(str(exc)) from None
    return Reference(domain=domain, path=path, tag=tag if tag is not None or at else DEFAULT_TAG, digest=digest or None)


def _split_domain(name: str) -> Tuple[str, str]:
    """Docker's ``splitDockerDomain``: which part of *name* is the registry."""
    first, slash, rest = name.partition("/")
    if not slash:
        # A single component is never host:port ("localhost:5000" is repo "localhost", tag "5000").
        return DOCKER_HUB_DOMAIN, OFFICIAL_NAMESPACE + name
    if first == DOCKER_HUB_LEGACY_DOMAIN:
        domain, path = DOCKER_HUB_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB_DOMAIN, name
    if domain == DOCKER_HUB_DOMAIN and "/" not in path:
        path = OFFICIAL_NAMESPACE + path
    return domain, path


def _checked_tag(tag: str, text: str) -> str:
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise InvalidReference(
            f"invalid reference {text!r}: tag {tag!r} must be 1 to 128 characters of letters, digits, '_', '.' "
            "and '-', not starting with '.' or '-'"
        )
    return tag
