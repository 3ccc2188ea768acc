"""The two files of a batch audit: the query file read (every row, bad ones with their problem) and the results
file (JSON lines: what is already answered, appended durably, a partial last line repaired on open).

`audit run` (fvmatch.audit.batch) answers the queries; a report (case_report/results.py) reads the results as they are.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fvmatch.errors import BadArgument
from fvmatch.paths import input_file_problem, read_listing, resolve_listed_path

QUERY_COLUMNS = ("query_id", "modality", "path")
OPTIONAL_COLUMNS = ("claimed_identity", "track", "audio_track")  # the tracks: of a video row (embed --video lists them)
# failures that make a row's query id unusable as its resume key: such rows are keyed by their line instead
ID_PROBLEMS = ("missing query id", "duplicate query id")


@dataclass(frozen=True)
class Query:
    query_id: str
    line: int
    modality: str
    raw_path: str
    path: Path | None  # None when the row is unusable (then `problem` says why)
    claimed_identity: str | None
    origin: str  # "queries.csv:4", for messages
    problem: str | None = None
    problem_kind: str | None = None
    face_track: int | None = None  # a video row's face track (None: the longest)
    audio_track: int | None = None  # a video row's audio track (None: the one with the most speech)

    @property
    def key(self) -> str:
        return resume_key(self.query_id, self.line, self.problem_kind)

    def file_problem(self) -> str | None:
        """Why the row's file cannot be read ("no such file", "is a directory, not a file"), naming the path as
        written and as resolved when the row is a line of a query file ("queries.csv:6: a.wav (/case/a.wav): ...")."""
        problem = input_file_problem(self.path)
        if problem is None or self.origin == self.raw_path:
            return problem
        resolved = str(self.path.resolve())
        return f"{self.raw_path}{'' if resolved == self.raw_path else f' ({resolved})'}: {problem}"


def resume_key(query_id: str, line: int, problem_kind: str | None) -> str:
    """What identifies a row across runs: its query id, or its line when the id is missing or repeated."""
    return f"line {line}" if problem_kind in ID_PROBLEMS else f"id {query_id}"


def read_queries(queries_file: Path, root: Path | None = None) -> list[Query]:
    """Every non-blank row of the query file, bad ones included (with `problem` set) so they can be recorded.

    `root` must come from paths.check_root. A file that is not a query file at all raises BadArgument.
    """
    queries: list[Query] = []
    first_line: dict[str, int] = {}
    for line, row in read_listing(queries_file, QUERY_COLUMNS, OPTIONAL_COLUMNS):
        origin = f"{queries_file}:{line}"
        query_id, modality, raw_path = row.get("query_id", ""), row.get("modality", ""), row.get("path", "")
        claim = row.get("claimed_identity") or None
        problem = kind = None
        path = None
        if "_short" in row:
            problem, kind = f"expected at least 3 columns ({','.join(QUERY_COLUMNS)}), found {row['_short']}", "short row"
        elif not query_id:
            problem, kind = "empty query id", "missing query id"
        elif query_id in first_line:
            problem, kind = f"query id {query_id!r} already used on line {first_line[query_id]}", "duplicate query id"
        elif modality not in ("face", "voice", "video"):
            problem, kind = f"unknown modality {modality!r} (face, voice or video)", "unknown modality"
        elif not raw_path:
            problem, kind = "empty path", "empty path"
        elif problem := _track_problem(row, modality):
            kind = "bad track"
        else:
            try:
                path = resolve_listed_path(queries_file, raw_path, root, origin)
            except BadArgument as error:
                problem, kind = error.problem, "path refused"
        if query_id and query_id not in first_line:
            first_line[query_id] = line
        tracks = {} if problem else {name: int(row[column]) for name, column in TRACK_COLUMNS
                                    if (row.get(column) or "").strip()}
        queries.append(Query(query_id, line, modality, raw_path, path, claim, origin, problem, kind, **tracks))
    return queries


TRACK_COLUMNS = (("face_track", "track"), ("audio_track", "audio_track"))  # (Query field, column)


def _track_problem(row: dict, modality: str) -> str | None:
    """Why a row's track columns cannot be used (a track is a whole number from 1, and only a video has tracks)."""
    for _, column in TRACK_COLUMNS:
        value = (row.get(column) or "").strip()
        if not value:
            continue
        if modality != "video":
            return f"{column} {value!r} goes with modality video (it picks one of a video's tracks)"
        if not value.isdigit() or int(value) < 1:
            return f"{column} {value!r} is not a track number (a whole number from 1)"
    return None


def is_result_record(record: object) -> bool:
    """Whether a decoded results line has the shape `audit run` writes (what resuming and reports rely on)."""
    if not isinstance(record, dict):
        return False
    if not (isinstance(record.get("query_id"), str) and type(record.get("line")) is int
            and record.get("status") in ("ok", "failed") and isinstance(record.get("model_id"), str)):
        return False
    if any(record.get(key) is not None and not isinstance(record[key], dict) for key in ("calibration", "quality")):
        return False
    candidates = record.get("candidates", [])
    return isinstance(candidates, list) and all(
        isinstance(c, dict) and isinstance(c.get("identity"), str) and _finite(c.get("score")) for c in candidates)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_results(path: Path, data: bytes, advice: str) -> dict[str, dict]:
    """The latest record per resume key in whole lines of results; BadArgument naming the first line that is not one."""
    latest: dict[str, dict] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not is_result_record(record):
            raise BadArgument(path, f"line {number} is not an fvmatch audit result; {advice}")
        latest[resume_key(record["query_id"], record["line"], record.get("error_kind"))] = record
    return latest


class ResultsFile:
    """The JSON-lines results of one query file: what is already answered, and appending more, durably."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.latest: dict[str, dict] = {}  # resume key -> the last record written for it
        self.repaired_bytes = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            raise BadArgument(self.path, "results path exists and is not a regular file")
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            # a run killed mid-write leaves a partial last line: drop it, that query is answered again
            self.repaired_bytes = len(data) - end
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                os.fsync(handle.fileno())
        self.latest = parse_results(self.path, data[:end], "use another --out")

    @classmethod
    @contextmanager
    def exclusive(cls, path: Path) -> Iterator["ResultsFile"]:
        """The results file, held against a second run writing to it at the same time (refused, not queued)."""
        path = Path(path)
        if path.exists() and not path.is_file():
            raise BadArgument(path, "results path exists and is not a regular file")
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise BadArgument(path, f"cannot write the results file ({error.strerror or error})") from None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BadArgument(path, "another audit run is writing to this results file") from None
            yield cls(path)
        finally:
            os.close(descriptor)

    def check_model(self, model_id: str) -> None:
        """Results of one file come from one model: refuse to mix in answers from another."""
        others = {record.get("model_id") for record in self.latest.values() if record.get("model_id")} - {model_id}
        if others:
            raise BadArgument(self.path, f"holds results from model {sorted(others)[0][:16]}, this run uses "
                              f"{model_id[:16]}; write to another --out")

    def append(self, records: Sequence[dict]) -> None:
        if not records:
            return
        text = "".join(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n" for record in records)
        # created owner-only: the results name evidence files and candidates
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        for record in records:
            self.latest[resume_key(record["query_id"], record["line"], record.get("error_kind"))] = record
