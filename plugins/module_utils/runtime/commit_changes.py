"""``commit --change``: Dockerfile instructions applied to an image's run configuration.

``docker commit -c 'CMD ["nginx","-g","daemon off;"]'`` takes a line of
Dockerfile; so does Berth, for the instructions that only change the
configuration: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER and WORKDIR.  Others
(RUN, COPY, ...) would need a build and are refused by name.

The rules are Dockerfile's:

* CMD and ENTRYPOINT take the JSON (exec) form when the argument is a JSON
  array of strings, otherwise the shell form, run by the image's ``Shell``
  (default ``/bin/sh -c``): ``CMD nginx -g 'daemon off;'`` becomes
  ``["/bin/sh", "-c", "nginx -g 'daemon off;'"]``.  An ENTRYPOINT clears the
  inherited CMD unless a CMD came earlier in the same commit.
* ENV and LABEL take ``key=value`` pairs (quotes group words) or the legacy
  ``KEY the rest of the line``; ENV, LABEL, EXPOSE, USER and WORKDIR expand
  ``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``${VAR:+alternative}``
  from the image's environment as it is at that instruction; single quotes
  keep text literal, a backslash escapes the next character.
* EXPOSE takes ``PORT``, ``PORT/PROTO`` or ``FIRST-LAST[/PROTO]`` (tcp when
  no protocol is given); WORKDIR is relative to the previous working directory.

One change may hold several instructions on separate lines (a trailing
backslash continues a line; ``#`` starts a comment line).
"""

import copy
import json
import posixpath
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import InvalidArgument

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "WORKDIR")
DOCKERFILE_INSTRUCTIONS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)  # fmt: skip
DEFAULT_SHELL = ("/bin/sh", "-c")
PROTOCOLS = ("tcp", "udp", "sctp")
ESCAPE = "\\"


def instructions(change: str) -> List[Tuple[str, str]]:
    """The ``(KEYWORD, arguments)`` of each instruction in one ``--change`` value."""
    result: List[Tuple[str, str]] = []
    pending = ""
    for raw in change.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith(ESCAPE):
            pending += line[:-1] + " "
            continue
        result.append(_split_instruction(pending + line, change))
        pending = ""
    if pending.strip():
        result.append(_split_instruction(pending, change))
    if not result:
        raise InvalidArgument(f"the change {change!r} holds no instruction (e.g. 'CMD [\"nginx\"]')")
    return result


def _split_instruction(line: str, change: str) -> Tuple[str, str]:
    parts = line.strip().split(None, 1)
    keyword = parts[0].upper()
    if keyword not in SUPPORTED:
        what = "a Dockerfile instruction that needs a build" if keyword in DOCKERFILE_INSTRUCTIONS else "unknown"
        raise InvalidArgument(
            f"commit cannot apply {parts[0]!r} in the change {change!r} ({what}): "
            f"only {', '.join(SUPPORTED)} are supported"
        )
    if len(parts) < 2 or not parts[1].strip():
        raise InvalidArgument(f"{keyword} needs an argument (in the change {change!r})")
    return keyword, parts[1].strip()


def apply_changes(run_config: Optional[Dict[str, Any]], changes: Sequence[str]) -> Dict[str, Any]:
    """A copy of an image's ``config`` section (Cmd, Env, ...) with the *changes* applied in order."""
    config: Dict[str, Any] = copy.deepcopy(run_config) if run_config else {}
    cmd_set = False
    for change in changes:
        for keyword, argument in instructions(change):
            env = _env_dict(config.get("Env") or [])
            if keyword == "CMD":
                config["Cmd"] = _command(argument, config)
                cmd_set = True
            elif keyword == "ENTRYPOINT":
                config["Entrypoint"] = _command(argument, config)
                if not cmd_set:
                    config.pop("Cmd", None)
            elif keyword == "ENV":
                for key, value in _name_values(argument, "ENV", env):
                    env[key] = value
                config["Env"] = [f"{key}={value}" for key, value in env.items()]
            elif keyword == "LABEL":
                labels = dict(config.get("Labels") or {})
                labels.update(_name_values(argument, "LABEL", env))
                config["Labels"] = labels
            elif keyword == "EXPOSE":
                ports = dict(config.get("ExposedPorts") or {})
                for word in split_words(argument):
                    for port in _ports(expand(word, env)):
                        ports[port] = {}
                config["ExposedPorts"] = ports
            elif keyword == "USER":
                words = split_words(argument)
                if len(words) != 1:
                    raise InvalidArgument(f"USER takes exactly one argument (user[:group]), not {argument!r}")
                config["User"] = expand(words[0], env)
            else:  # WORKDIR
                config["WorkingDir"] = _workdir(expand(argument, env), config.get("WorkingDir") or "/")
    return config


def _env_dict(entries: Sequence[str]) -> Dict[str, str]:
    result: Dict[str, str] = {}
    for entry in entries:
        key, _sep, value = entry.partition("=")
        result[key] = value
    return result


def _command(argument: str, config: Dict[str, Any]) -> List[str]:
    if argument.startswith("["):
        try:
            parsed = json.loads(argument)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            return parsed
    shell = config.get("Shell") or list(DEFAULT_SHELL)
    return [*shell, argument]


def _name_values(argument: str, keyword: str, env: Dict[str, str]) -> List[Tuple[str, str]]:
    words = split_words(argument)
    if "=" not in words[0]:
        key = expand(words[0], env)
        rest = argument[len(words[0]) :].strip()
        if not rest:
            raise InvalidArgument(f"{keyword} needs a value: {keyword} key=value (or {keyword} key value)")
        return [(key, expand(rest, env))]
    pairs = []
    for word in words:
        if "=" not in word:
            raise InvalidArgument(f"{keyword} {argument!r}: cannot find '=' in {word!r}; write key=value")
        key, _sep, value = word.partition("=")
        if not key:
            raise InvalidArgument(f"{keyword} {argument!r}: a name is missing before '=' in {word!r}")
        pairs.append((expand(key, env), expand(value, env)))
    return pairs


def _ports(text: str) -> List[str]:
    spec, _sep, protocol = text.partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"EXPOSE {text!r}: the protocol must be tcp, udp or sctp")
    first, _dash, last = spec.partition("-")
    try:
        low = int(first)
        high = int(last) if last else low
    except ValueError:
        raise InvalidArgument(f"EXPOSE {text!r}: a port is a number (or a range FIRST-LAST)") from None
    if not 1 <= low <= high <= 65535:
        raise InvalidArgument(f"EXPOSE {text!r}: ports are 1-65535, a range from low to high")
    return [f"{port}/{protocol}" for port in range(low, high + 1)]


def _workdir(requested: str, current: str) -> str:
    if not requested:
        raise InvalidArgument("WORKDIR needs a directory")
    return posixpath.normpath(posixpath.join(current, requested))


def split_words(text: str) -> List[str]:
    """Words separated by blanks, quotes and escapes kept (for :func:`expand`), like Dockerfile's parser."""
    words: List[str] = []
    word = ""
    quote = ""
    in_word = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == ESCAPE and quote != "'" and index + 1 < len(text):
            word += char + text[index + 1]
            in_word = True
            index += 2
            continue
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char.isspace():
            if in_word:
                words.append(word)
                word = ""
                in_word = False
            index += 1
            continue
        word += char
        in_word = True
        index += 1
    if quote:
        raise InvalidArgument(f"unmatched {quote} in {text!r}")
    if in_word:
        words.append(word)
    return words


def expand(word: str, env: Dict[str, str]) -> str:
    """*word* with quotes removed, escapes resolved and ``$VAR`` forms replaced from *env*."""
    return _Expander(word, env).run()


class _Expander:
    def __init__(self, text: str, env: Dict[str, str]) -> None:
        self.text = text
        self.env = env
        self.index = 0

    def run(self, stop: str = "") -> str:
        out = ""
        while self.index < len(self.text):
            char = self.text[self.index]
            if stop and char == stop:
                return out
            if char == ESCAPE:
                out += self.text[self.index + 1 : self.index + 2]
                self.index += 2
            elif char == "'":
                end = self.text.find("'", self.index + 1)
                if end < 0:
                    raise InvalidArgument(f"unmatched ' in {self.text!r}")
                out += self.text[self.index + 1 : end]
                self.index = end + 1
            elif char == '"':
                self.index += 1
                out += self._double_quoted()
            elif char == "$":
                out += self._variable()
            else:
                out += char
                self.index += 1
        if stop:
            raise InvalidArgument(f"unmatched '{{' in {self.text!r}")
        return out

    def _double_quoted(self) -> str:
        out = ""
        while self.index < len(self.text):
            char = self.text[self.index]
            if char == '"':
                self.index += 1
                return out
            if char == ESCAPE and self.text[self.index + 1 : self.index + 2] in ('"', "$", ESCAPE):
                out += self.text[self.index + 1]
                self.index += 2
            elif char == "$":
                out += self._variable()
            else:
                out += char
                self.index += 1
        raise InvalidArgument(f'unmatched " in {self.text!r}')

    def _variable(self) -> str:
        self.index += 1  # the '$'
        if self.text[self.index : self.index + 1] == "{":
            self.index += 1
            name = self._name()
            if not name:
                raise InvalidArgument(f"a variable name is missing after '${{' in {self.text!r}")
            operator = self.text[self.index : self.index + 2]
            if operator in (":-", ":+"):
                self.index += 2
                word = self.run(stop="}")
                self.index += 1
                value = self.env.get(name, "")
                if operator == ":-":
                    return value or word
                return word if value else ""
            if self.index >= len(self.text):
                raise InvalidArgument(f"unmatched '{{' in {self.text!r}")
            if self.text[self.index] != "}":
                raise InvalidArgument(
                    f"unsupported variable form in {self.text!r}: use ${{VAR}}, ${{VAR:-x}}, ${{VAR:+x}}"
                )
            self.index += 1
            return self.env.get(name, "")
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def _name(self) -> str:
        start = self.index
        while self.index < len(self.text) and (self.text[self.index].isalnum() or self.text[self.index] == "_"):
            self.index += 1
        return self.text[start : self.index]
