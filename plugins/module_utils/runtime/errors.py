"""One exception hierarchy for the runtime.

Every error the runtime raises on purpose is a :class:`BerthError` whose
``str()`` is a message fit for a user: it names the thing that was wrong and,
where there is one, the fix.  The CLI prints it, modules hand it to
``fail_json(msg=...)``.
"""

from typing import Optional


class BerthError(Exception):
    """Base class of every error the runtime reports to users."""


class InvalidArgument(BerthError):
    """A value given by the user (option, reference, port spec...) is invalid."""


class InvalidReference(InvalidArgument):
    """An image reference does not follow Docker's reference grammar."""


class ConfigError(BerthError):
    """A configuration file (daemon.json, auth file) is unreadable or invalid."""


class NotFound(BerthError):
    """An image, layer, container or volume does not exist."""


class Conflict(BerthError):
    """The request conflicts with existing state (a name in use, a port taken)."""


class StateError(BerthError):
    """The object is not in a state that allows the operation."""


class RegistryError(BerthError):
    """A registry answered with an error or could not be reached."""

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(RegistryError):
    """The registry refused the credentials (or wants some)."""


class ManifestError(RegistryError):
    """A manifest or index is malformed, of an unsupported kind, or has no matching platform."""


class IntegrityError(BerthError):
    """Content does not match the digest, size or diff_id that names it."""


class LayerError(BerthError):
    """A layer archive is malformed or tries to write outside its directory."""


class ContainerError(BerthError):
    """A container could not be created, started, stopped or removed."""


class NetworkError(BerthError):
    """Bridge, address or port set-up failed."""


class CgroupError(BerthError):
    """Resource limits could not be applied."""
