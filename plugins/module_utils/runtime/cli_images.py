"""The image commands of ``berth`` that make or move images: commit, push, save, load.

Registered like ``cli_containers``: ``add_image_commands(sub)`` adds the
parsers, importing this module registers the commands.
"""

import argparse
import sys
from typing import Any, Dict

from .cli import _add_registry_options, _images, _registry_options, _runtime, command, echo
from .errors import InvalidArgument

PUSH_LABELS: Dict[str, str] = {
    "exists": "Layer already exists",
    "mounted": "Mounted from another repository",
    "pushed": "Pushed",
}


class PushProgress:
    """One line per blob when it is settled, like ``docker push``."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout

    def __call__(self, event: str, subject: str, current: int, total: int) -> None:
        from .display import short_id

        label = PUSH_LABELS.get(event)
        if label:
            self.out.write(f"{short_id(subject)}: {label}\n")
            self.out.flush()


@command("push")
def cmd_push(args: argparse.Namespace) -> int:
    images = _images(args)
    result = images.push(args.image, args.target, _registry_options(args), args.format, PushProgress())
    echo(f"{result.reference.tag}: digest: {result.digest}")
    return 0


@command("login")
def cmd_login(args: argparse.Namespace) -> int:
    from .images import RegistryOptions

    username, password = args.username, args.password
    if args.password_stdin:
        if password is not None:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.readline().rstrip("\n")
    elif password is not None:
        echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    if username is None or password is None:
        if not sys.stdin.isatty():
            raise InvalidArgument("give --username and --password-stdin (stdin is not a terminal to ask on)")
        import getpass

        if username is None:
            username = input("Username: ").strip()
        if password is None:
            password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument("login needs a non-empty username and password")
    options = RegistryOptions(
        username=username,
        password=password,
        auth_file=args.authfile,
        validate_certs=not args.tls_verify_false,
        ca_path=args.ca,
    )
    stored = _images(args).login(args.server, options)
    echo(f"Credentials saved in {stored}", file=sys.stderr)
    echo("Login Succeeded")
    return 0


@command("logout")
def cmd_logout(args: argparse.Namespace) -> int:
    from .images import Images

    if not Images.logout(args.server, args.authfile):
        raise InvalidArgument(f"not logged in to {args.server}")
    echo(f"Removing login credentials for {args.server}")
    return 0


@command("save")
def cmd_save(args: argparse.Namespace) -> int:
    images = _images(args)
    if args.output in (None, "-"):
        if sys.stdout.isatty():
            raise InvalidArgument("refusing to write an archive to a terminal: use -o FILE or redirect stdout")
        images.save(args.images, sys.stdout.buffer)
        return 0
    import os
    import tempfile

    from . import fsutil

    directory = os.path.dirname(os.path.abspath(args.output))
    fd, temp = tempfile.mkstemp(prefix=".berth-save-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            images.save(args.images, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, args.output)
        fsutil.fsync_dir(directory)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return 0


@command("load")
def cmd_load(args: argparse.Namespace) -> int:
    import os
    import shutil
    import tempfile

    images = _images(args)
    path = args.input
    spooled = None
    if path in (None, "-"):
        images.store.ensure()
        fd, spooled = tempfile.mkstemp(prefix=".berth-load-", dir=images.store.root)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        path = spooled
    try:
        for record, names in images.load(path, args.name, args.platform):
            from .reference import parse as parse_reference

            for name in names:
                echo(f"Loaded image: {parse_reference(name).display}")
            if not names:
                echo(f"Loaded image ID: {record.id}")
    finally:
        if spooled:
            os.unlink(spooled)
    return 0


@command("commit")
def cmd_commit(args: argparse.Namespace) -> int:
    from .commit import commit

    runtime = _runtime(args)
    container = runtime.get(args.container)
    result = commit(
        runtime,
        container,
        args.repository,
        message=args.message or "",
        author=args.author or "",
        changes=args.change or [],
        pause=args.pause,
        fmt=args.format,
    )
    echo(result.image.id)
    return 0


def add_image_commands(sub: Any) -> None:
    p = sub.add_parser("commit", help="create a new image from a container's changes")
    p.add_argument("container")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]", help="name of the new image (default: none)")
    p.add_argument("-m", "--message", help="commit message (the history entry's comment)")
    p.add_argument("-a", "--author", help='author (e.g. "Jane Doe <jane@example.com>")')
    p.add_argument(
        "-c",
        "--change",
        action="append",
        help="apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR); repeatable",
    )
    p.add_argument(
        "-p", "--pause", "--pause=true", dest="pause", action="store_true", default=True,
        help="pause the container while its changes are read (the default)",
    )  # fmt: skip
    p.add_argument("--pause=false", dest="pause", action="store_false", help="read the changes while it runs")
    p.add_argument("--format", choices=("oci", "docker"), default="oci", help="manifest format (default: oci)")

    p = sub.add_parser("push", help="upload an image to a registry")
    p.add_argument("image", help="the local image (name, tag or id)")
    p.add_argument("target", nargs="?", help="where to push it (default: its own name)")
    p.add_argument("--format", choices=("oci", "docker"), help="manifest format (default: as the image was pulled)")
    _add_registry_options(p)

    p = sub.add_parser("login", help="check and store credentials for a registry (as docker login)")
    p.add_argument("server", nargs="?", default="docker.io", help="the registry (default: docker.io)")
    p.add_argument("-u", "--username", help="user name (asked on a terminal when missing)")
    p.add_argument("-p", "--password", help="password (insecure: prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--authfile", help="the credentials file to write (default: ~/.docker/config.json)")
    p.add_argument("--ca", help="CA certificate (file or directory of *.crt) to verify the registry with")
    p.add_argument(
        "--tls-verify=false", dest="tls_verify_false", action="store_true", help="do not verify TLS certificates"
    )

    p = sub.add_parser("logout", help="forget the stored credentials of a registry")
    p.add_argument("server", nargs="?", default="docker.io", help="the registry (default: docker.io)")
    p.add_argument("--authfile", help="the credentials file (default: ~/.docker/config.json)")

    p = sub.add_parser("save", help="write images to a tar archive (OCI image layout)")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output", help="the archive file (default: stdout)")

    p = sub.add_parser("load", help="load images from a tar archive (OCI image layout or docker save)")
    p.add_argument("-i", "--input", help="the archive file (default: stdin)")
    p.add_argument("--name", help="name for an image the archive leaves unnamed")
    p.add_argument("--platform", help="OS/ARCH[/VARIANT] to load from a multi-platform archive")
