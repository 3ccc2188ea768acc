"""Property-based tests of query-file parsing (fvmatch audit run): any bytes in, only BadArgument or queries out."""
from __future__ import annotations

import csv
import io
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fvmatch.audit.files import read_queries
from fvmatch.errors import BadArgument

HEADER = "query_id,modality,path,claimed_identity\n"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

cells = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
names = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\x00"),
                min_size=1, max_size=20).filter(lambda name: name.strip() not in ("", ".", ".."))


def csv_text(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


@SETTINGS
@given(body=st.binary(max_size=400))
def test_any_bytes_after_the_header_give_queries_or_one_bad_argument(tmp_path_factory, body):
    path = tmp_path_factory.mktemp("q") / "queries.csv"
    path.write_bytes(HEADER.encode() + body)
    try:
        queries = read_queries(path)
    except BadArgument as error:
        assert str(path) in str(error)
        return
    # every non-blank row became one query, good or bad, with its line number for the record
    text = body.decode("utf-8")
    # read as read_listing reads the file (newline=""): a lone \r ends a row there too
    rows = [row for row in csv.reader(io.StringIO(HEADER + text, newline="")) if any(cell.strip() for cell in row)][1:]
    assert len(queries) == len(rows)
    assert all(q.problem is not None or q.path is not None for q in queries)


@SETTINGS
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=6), max_size=12))
def test_arbitrary_rows_each_become_exactly_one_query_and_bad_ones_say_why(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("q") / "queries.csv"
    path.write_text(HEADER + csv_text(rows), encoding="utf-8")
    try:
        queries = read_queries(path)
    except BadArgument as error:  # only a cell csv cannot parse (e.g. NUL) may refuse the whole file
        assert "not a readable UTF-8 CSV file" in error.problem
        return
    parsed = [row for row in csv.reader(io.StringIO(HEADER + csv_text(rows))) if any(c.strip() for c in row)][1:]
    assert len(queries) == len(parsed)
    seen = set()
    for query, row in zip(queries, parsed):
        usable = (len(row) >= 3 and row[0].strip() and row[0].strip() not in seen
                  and row[1].strip() in ("face", "voice") and row[2].strip() and "\x00" not in row[2])
        assert (query.problem is None) == bool(usable), (row, query)
        if row and row[0].strip():
            seen.add(row[0].strip())


@SETTINGS
@given(entries=st.lists(st.tuples(names, st.sampled_from(["face", "voice"]), names, st.one_of(st.none(), names)),
                        max_size=8, unique_by=lambda entry: entry[0].strip()))
def test_valid_rows_round_trip_with_unicode_commas_quotes_and_spaces(tmp_path_factory, entries):
    folder = tmp_path_factory.mktemp("q")
    path = folder / "queries.csv"
    path.write_text(HEADER + csv_text([(i, m, p, c or "") for i, m, p, c in entries]), encoding="utf-8")
    queries = read_queries(path)
    assert [(q.query_id, q.modality, q.raw_path, q.claimed_identity, q.problem) for q in queries] == \
        [(i.strip(), m, p.strip(), (c.strip() or None) if c else None, None) for i, m, p, c in entries]
    assert all(q.path == folder / q.raw_path for q in queries)


@SETTINGS
@given(parts=st.lists(st.sampled_from(["..", ".", "a", "b c", "é", "/", "//", "x.jpg"]), min_size=1, max_size=8))
def test_with_a_root_no_accepted_path_resolves_outside_it(tmp_path_factory, parts):
    base = tmp_path_factory.mktemp("q")
    root = base / "case"
    (root / "sub").mkdir(parents=True)
    os.symlink(base, root / "sub" / "up")  # a link out of the case folder
    raw = "".join(part if part == "/" or part == "//" else part + "/" for part in parts).rstrip("/") or "."
    for candidate in (raw, "up/" + raw):
        path = root / "sub" / "queries.csv"
        path.write_text(HEADER + csv_text([("q", "face", candidate, "")]), encoding="utf-8")
        (query,) = read_queries(path, root.resolve())
        if query.problem is None:
            real = os.path.realpath(query.path)
            assert real == str(root.resolve()) or real.startswith(str(root.resolve()) + os.sep)
        else:
            assert query.problem_kind == "path refused"

