"""``berth``: a docker-like command line over the runtime's public API.

Each command imports what it needs when it runs, so ``berth ps`` or
``berth images`` never load requests or pyroute2, and only the parser of
the command being run is built (argparse spends about half a millisecond
per command parser, mostly in gettext lookups).  Errors the runtime reports on purpose
(:class:`BerthError`) print as one line, and so does a full disk;
``--debug`` shows the traceback of anything else.
"""

import argparse
import errno
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from .errors import BerthError, InvalidArgument

# Docker's exit codes for `run`: 125 the runtime failed, 126 the command cannot
# be invoked, 127 the command was not found.
EXIT_RUNTIME_ERROR = 125

COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def register(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = function
        return function

    return register


def echo(text: object = "", file: Any = None) -> None:
    """The CLI's print (module_utils code must not call print(): a module's stdout is its JSON result)."""
    (file or sys.stdout).write(f"{text}\n")


def _config(args: argparse.Namespace) -> Any:
    from . import config

    return config.load(args.config)


def _images(args: argparse.Namespace) -> Any:
    from .images import Images

    return Images(_config(args))


def _runtime(args: argparse.Namespace) -> Any:
    from .containers import Runtime

    return Runtime(_config(args))


def _registry_options(args: argparse.Namespace) -> Any:
    from .images import RegistryOptions

    password = None
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\n")
    return RegistryOptions(
        username=getattr(args, "username", None),
        password=password,
        auth_file=getattr(args, "authfile", None),
        validate_certs=not getattr(args, "tls_verify_false", False),
        ca_path=getattr(args, "ca", None),
    )


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=4, sort_keys=False)
    sys.stdout.write("\n")


# -- images ---------------------------------------------------------------------------


def _pull(args: argparse.Namespace, name: str, quiet: bool = False) -> Any:
    from .display import PullProgress
    from .reference import parse as parse_reference

    reference = parse_reference(name)
    out = sys.stderr if quiet else sys.stdout
    if not reference.digest and ":" not in name.rsplit("/", 1)[-1]:
        out.write(f"Using default tag: {reference.tag}\n")
    out.write(f"{reference.tag or reference.digest}: Pulling from {reference.repository}\n")
    progress = PullProgress(out)
    result = _images(args).pull(name, _registry_options(args), getattr(args, "platform", None), progress)
    out.write(f"Digest: {result.image.repo_digests[-1].split('@')[-1]}\n")
    if result.changed:
        out.write(f"Status: Downloaded newer image for {reference.familiar}\n")
    else:
        out.write(f"Status: Image is up to date for {reference.familiar}\n")
    return result


@command("pull")
def cmd_pull(args: argparse.Namespace) -> int:
    result = _pull(args, args.image)
    echo(str(result.reference))
    return 0


@command("images")
def cmd_images(args: argparse.Namespace) -> int:
    from .display import ago, human_size, short_id, table
    from .reference import parse as parse_reference

    rows: List[List[str]] = []
    for record, tags in _images(args).list():
        image_id = record.id if args.no_trunc else short_id(record.id)
        if args.quiet:
            rows.append([image_id])
            continue
        names = [parse_reference(tag) for tag in tags] or [None]
        for reference in names:
            if reference is None:
                repository, tag = "<none>", "<none>"
            else:
                repository, tag = reference.familiar, reference.tag or "<none>"
            row = [repository, tag]
            if args.digests:
                row.append(record.repo_digests[-1].split("@")[-1] if record.repo_digests else "<none>")
            rows.append([*row, image_id, ago(record.created) or "N/A", human_size(record.size)])
    if args.quiet:
        for row in dict.fromkeys(tuple(row) for row in rows):
            echo(row[0])
        return 0
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID", "CREATED", "SIZE"]
    table(headers, rows)
    return 0


@command("rmi")
def cmd_rmi(args: argparse.Namespace) -> int:
    runtime = _runtime(args)
    status = 0
    for name in args.images:
        try:
            for line in runtime.images.remove(name, runtime.containers_using_image, force=args.force):
                echo(line)
        except BerthError as exc:
            echo(f"Error: {exc}", file=sys.stderr)
            status = 1
    return status


@command("tag")
def cmd_tag(args: argparse.Namespace) -> int:
    _images(args).tag(args.source, args.target)
    return 0


@command("history")
def cmd_history(args: argparse.Namespace) -> int:
    from .display import ago, human_size, short_id, table, truncate

    rows = []
    for row in _images(args).history(args.image):
        image_id = row["id"] if args.no_trunc or row["id"] == "<missing>" else short_id(row["id"])
        created_by = row["created_by"] if args.no_trunc else truncate(row["created_by"], 45)
        if args.quiet:
            rows.append([image_id])
            continue
        rows.append([image_id, ago(row["created"]) or "N/A", created_by, human_size(row["size"]), row["comment"]])
    if args.quiet:
        for row in rows:
            echo(row[0])
        return 0
    table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows)
    return 0


@command("inspect")
def cmd_inspect(args: argparse.Namespace) -> int:
    from .errors import NotFound

    results = []
    runtime = _runtime(args)
    for name in args.names:
        if args.type in (None, "container"):
            container = runtime.find(name)
            if container is not None:
                results.append(runtime.inspect(container))
                continue
        if args.type in (None, "image"):
            try:
                results.append(runtime.images.inspect(name))
                continue
            except NotFound:
                pass
        raise NotFound(f"no such object: {name}")
    _print_json(results)
    return 0


@command("store")
def cmd_store(args: argparse.Namespace) -> int:
    images = _images(args)
    if args.repair:
        for path in images.store.remove_stale_workdirs():
            echo(f"removed unfinished unpack {path}")
    problems = images.store.verify(deep=args.deep)
    for problem in problems:
        echo(problem)
    if problems:
        echo(f"{len(problems)} problem(s) found in {images.store.root}", file=sys.stderr)
        return 1
    count = len(images.store.images())
    echo(f"store {images.store.root} is intact ({count} image{'s' if count != 1 else ''})")
    return 0


# -- parser ---------------------------------------------------------------------------------


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", help="OS/ARCH[/VARIANT] to pull from a multi-platform image")
    parser.add_argument("--username", help="registry user name")
    parser.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
    parser.add_argument("--authfile", help="a ~/.docker/config.json-style file of registry credentials")
    parser.add_argument("--ca", help="CA certificate (file or directory of *.crt) to verify the registry with")
    parser.add_argument(
        "--tls-verify=false", dest="tls_verify_false", action="store_true", help="do not verify TLS certificates"
    )


class _Skipped:
    """Stands in for the parser of a command that is not being run: every call is ignored."""

    def __getattr__(self, name: str) -> Any:
        return self._ignore

    def _ignore(self, *args: Any, **kwargs: Any) -> "_Skipped":
        return self


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, sized without importing shutil (and bz2, lzma...) in every command."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: Any = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _terminal_columns() - 2)


def _terminal_columns() -> int:
    """What ``shutil.get_terminal_size().columns`` says: $COLUMNS, else the terminal on stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _OnlyCommand:
    """The subparsers action, building the parser of one command only (all of them when *wanted* is None)."""

    def __init__(self, sub: Any, wanted: Optional[str]) -> None:
        self.sub = sub
        self.wanted = wanted
        self.built = False

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.wanted is not None and name != self.wanted:
            return _Skipped()
        self.built = True
        kwargs.setdefault("formatter_class", _Formatter)
        return self.sub.add_parser(name, **kwargs)


def _command_word(argv: Sequence[str]) -> Optional[str]:
    """The command in *argv* (the first word that is not a global option), or None."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The ``berth`` parser; given *argv*, with the parser of its command only (when it names one)."""
    wanted = _command_word(argv) if argv is not None else None
    parser = _build_parser(wanted)
    if wanted is not None and not parser.built:  # type: ignore[attr-defined]
        parser = _build_parser(None)  # an unknown command: argparse lists the real ones
    return parser


def _build_parser(wanted: Optional[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="berth", description="Run containers without a daemon.", formatter_class=_Formatter
    )
    parser.add_argument("--config", help="daemon.json to use (default: $BERTH_CONFIG or /etc/berth/daemon.json)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    subparsers = parser.add_subparsers(dest="cmd", metavar="COMMAND")
    subparsers.required = True
    sub: Any = _OnlyCommand(subparsers, wanted)

    p = sub.add_parser("pull", help="download an image from a registry")
    p.add_argument("image")
    _add_registry_options(p)

    p = sub.add_parser("images", help="list images")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")

    p = sub.add_parser("rmi", help="remove images")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--force", action="store_true", help="untag images still used by containers")

    p = sub.add_parser("tag", help="create a tag TARGET that refers to SOURCE")
    p.add_argument("source")
    p.add_argument("target")

    p = sub.add_parser("history", help="show the history of an image")
    p.add_argument("image")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")

    p = sub.add_parser("inspect", help="low-level information on containers or images")
    p.add_argument("names", nargs="+")
    p.add_argument("--type", choices=("container", "image"))

    p = sub.add_parser("store", help="check the image store")
    p.add_argument("action", choices=("verify",))
    p.add_argument("--deep", action="store_true", help="also decompress every layer blob and check its diff_id")
    p.add_argument("--repair", action="store_true", help="first remove what killed pulls left behind")

    from .cli_containers import add_container_commands
    from .cli_images import add_image_commands

    add_container_commands(sub)
    add_image_commands(sub)
    parser.built = sub.built  # type: ignore[attr-defined]
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    # Importing them registers their commands.
    from . import cli_containers, cli_images  # noqa: F401  # pylint: disable=unused-import

    try:
        return COMMANDS[args.cmd](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except BerthError as exc:
        echo(f"berth: {exc}", file=sys.stderr)
        if args.cmd in ("run", "create", "exec"):
            return getattr(exc, "exit_code", EXIT_RUNTIME_ERROR)
        return 1
    except Exception as exc:  # pylint: disable=broad-exception-caught
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            where = exc.filename or _config(args).data_root
            echo(f"berth: no space left on the device of {where}: free some space, or move data-root", file=sys.stderr)
            return EXIT_RUNTIME_ERROR if args.cmd in ("run", "create") else 1
        if args.debug or os.environ.get("BERTH_DEBUG"):
            raise
        import traceback

        echo(
            f"berth: unexpected error (run with --debug for details): {traceback.format_exc(limit=1)}", file=sys.stderr
        )
        return 1


def usage_error(message: str) -> InvalidArgument:
    return InvalidArgument(message)
