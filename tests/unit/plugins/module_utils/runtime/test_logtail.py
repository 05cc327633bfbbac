"""logtail: the last records of json-file logs, read backwards across rotated files."""

import json
from pathlib import Path
from typing import List

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import logtail


def record(text: str, stream: str = "stdout", second: int = 0) -> str:
    return json.dumps({"log": text, "stream": stream, "time": f"2026-01-01T00:00:{second:02d}.000000000Z"}) + "\n"


def write_log(path: Path, texts: List[str], stream: str = "stdout") -> None:
    path.write_text("".join(record(text, stream) for text in texts), encoding="utf-8")


def texts(records: List[dict]) -> List[str]:
    return [item["text"] for item in records]


def test_the_last_records_oldest_first_without_newlines(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    write_log(log, [f"line {n}\n" for n in range(10)])
    assert texts(logtail.tail([str(log)], 3)) == ["line 7", "line 8", "line 9"]


def test_both_streams_interleaved_as_written(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    log.write_text(record("out 1\n") + record("err 1\n", "stderr", 1) + record("out 2\n", second=2), encoding="utf-8")
    result = logtail.tail([str(log)], 10)
    assert [(item["stream"], item["text"]) for item in result] == [
        ("stdout", "out 1"),
        ("stderr", "err 1"),
        ("stdout", "out 2"),
    ]
    assert result[1]["time"] == "2026-01-01T00:00:01.000000000Z"


def test_all_records_when_the_count_is_none(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    write_log(log, ["a\n", "b\n"])
    assert texts(logtail.tail([str(log)], None)) == ["a", "b"]


@pytest.mark.parametrize("count", [0, -5])
def test_nothing_for_a_count_of_zero_or_less(tmp_path: Path, count: int) -> None:
    log = tmp_path / "c-json.log"
    write_log(log, ["a\n"])
    assert logtail.tail([str(log)], count) == []


def test_rotated_files_are_read_only_while_records_are_still_needed(tmp_path: Path) -> None:
    oldest, older, current = (tmp_path / name for name in ("c-json.log.2", "c-json.log.1", "c-json.log"))
    write_log(oldest, ["r2-a\n", "r2-b\n"])
    write_log(older, ["r1-a\n", "r1-b\n"])
    write_log(current, ["now\n"])
    paths = [str(oldest), str(older), str(current)]
    assert texts(logtail.tail(paths, 2)) == ["r1-b", "now"]
    assert texts(logtail.tail(paths, 4)) == ["r2-b", "r1-a", "r1-b", "now"]
    assert texts(logtail.tail(paths, 100)) == ["r2-a", "r2-b", "r1-a", "r1-b", "now"]
    oldest.write_bytes(b"\x00 not a log at all")
    assert texts(logtail.tail(paths, 3)) == ["r1-a", "r1-b", "now"], "the oldest file is never read for 3"


def test_records_across_block_boundaries_and_longer_than_a_block(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    long_text = "x" * (logtail.BLOCK * 2 + 17)
    lines = [f"{n:05d} " + "y" * (n % 300) + "\n" for n in range(2000)]
    write_log(log, [*lines[:1000], long_text + "\n", *lines[1000:]])
    result = texts(logtail.tail([str(log)], 1001))
    assert result[0] == long_text
    assert result[1:] == [line[:-1] for line in lines[1000:]]
    assert texts(logtail.tail([str(log)], None)) == [line[:-1] for line in lines[:1000]] + [long_text] + [
        line[:-1] for line in lines[1000:]
    ]


def test_a_partial_record_keeps_its_text_and_unreadable_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    log.write_text(record("no newline yet") + "{broken json\n" + '"just a string"\n' + record("last\n"), "utf-8")
    assert texts(logtail.tail([str(log)], 2)) == ["no newline yet", "last"]


def test_missing_files_and_a_file_without_a_final_newline(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    log.write_text(record("a\n") + record("b\n").rstrip("\n"), encoding="utf-8")
    assert texts(logtail.tail([str(tmp_path / "gone.log"), str(log)], 5)) == ["a", "b"]
    assert logtail.tail([str(tmp_path / "gone.log")], 5) == []
