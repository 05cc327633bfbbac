"""How the CLI shows things: Docker's tables, sizes, durations and pull progress."""

import sys
import time
from datetime import datetime, timezone
from typing import IO, Dict, List, Optional, Sequence


def human_size(size: float) -> str:
    """Docker's sizes: decimal units, three significant digits (``72.8MB``, ``1.23kB``, ``0B``)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    value = float(size)
    unit = 0
    while value >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    text = f"{value:.3g}"
    if "e" in text:
        text = f"{value:.0f}"
    return f"{text}{units[unit]}"


def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration``: "Less than a second", "About a minute", "3 hours"..."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = seconds / 60
    if minutes < 2:
        return "About a minute"
    if minutes < 60:
        return f"{int(minutes)} minutes"
    hours = minutes / 60
    if hours < 2:
        return "About an hour"
    if hours < 48:
        return f"{int(hours)} hours"
    days = hours / 24
    if days < 14:
        return f"{int(days)} days"
    if days < 60:
        return f"{int(days / 7)} weeks"
    if days < 365 * 2:
        return f"{int(days / 30)} months"
    return f"{int(days / 365)} years"


def parse_timestamp(text: str) -> Optional[float]:
    """Seconds since the epoch of an RFC 3339 timestamp (nanoseconds tolerated), or None."""
    if not text:
        return None
    value = text.strip().replace("Z", "+00:00")
    if "." in value:
        head, _dot, rest = value.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        value = f"{head}.{digits[:6]}{zone}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def ago(text_or_seconds: object, now: Optional[float] = None) -> str:
    """``2 hours ago`` for a timestamp (string or epoch seconds)."""
    moment = text_or_seconds if isinstance(text_or_seconds, (int, float)) else parse_timestamp(str(text_or_seconds))
    if moment is None:
        return ""
    return human_duration(max(0.0, (now or time.time()) - float(moment))) + " ago"


def now_rfc3339() -> str:
    ns = time.time_ns()
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{fraction:09d}Z"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: IO[str] = sys.stdout) -> None:
    """Columns padded like Docker's tabwriter (three spaces between columns)."""
    widths = [len(header) for header in headers]
    for row in rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[column]) for column, cell in enumerate(row)]
        out.write("   ".join(cells).rstrip() + "\n")


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class PullProgress:
    """Per-layer status lines like ``docker pull``; redrawn in place on a terminal, plain otherwise."""

    LABELS = {
        "exists": "Already exists",
        "waiting": "Waiting",
        "downloading": "Downloading",
        "downloaded": "Download complete",
        "extracting": "Extracting",
        "complete": "Pull complete",
    }

    def __init__(self, out: IO[str] = sys.stdout, tty: Optional[bool] = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.order: List[str] = []
        self.lines: Dict[str, str] = {}
        self.drawn = 0
        self.last_draw = 0.0

    def __call__(self, event: str, subject: str, current: int, total: int) -> None:
        if event in ("resolved", "done"):
            return
        layer = short_id(subject)
        if layer not in self.lines:
            self.order.append(layer)
        label = self.LABELS.get(event, event)
        if event == "downloading" and total:
            label = f"Downloading  {human_size(current)}/{human_size(total)}"
        previous = self.lines.get(layer)
        self.lines[layer] = label
        if self.tty:
            if event != "downloading" or time.monotonic() - self.last_draw > 0.1:
                self.redraw()
        elif event in ("exists", "complete") and previous != label:
            self.out.write(f"{layer}: {label}\n")

    def redraw(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}A")
        for layer in self.order:
            self.out.write(f"\x1b[2K{layer}: {self.lines[layer]}\n")
        self.drawn = len(self.order)
        self.last_draw = time.monotonic()
        self.out.flush()
