"""Property-based tests of enrolment manifests (fvmatch.enrollment.enroll.items_from_manifest over fvmatch.paths): any
bytes in, only BadArgument or items and recorded failures out, one per row, each naming the line the row starts on;
valid rows round-trip; with a root, a path is accepted exactly when it resolves inside it."""
from __future__ import annotations

import csv
import io
import itertools
import os
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fvmatch.enrollment.enroll import MANIFEST_COLUMNS, EnrollReport, items_from_manifest
from fvmatch.errors import BadArgument
from fvmatch.paths import resolve_listed_path

HEADER = "identity,modality,path\r\n"
SETTINGS = settings(max_examples=150, deadline=None)
_numbers = itertools.count()

# any text but lone surrogates (which no UTF-8 file can hold)
cells = st.text(st.characters(blacklist_categories=("Cs",)), max_size=25)
# what an analyst may name a person: printable unicode with commas, quotes, apostrophes, inner spaces
labels = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zl", "Zp")),
                 min_size=1, max_size=40).map(str.strip).filter(bool)
# a file name on Linux may hold anything but "/" and NUL, newlines included
file_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                     min_size=1, max_size=20).filter(lambda name: name.strip() not in ("", ".", ".."))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("manifests")


def write_manifest(folder: Path, data: bytes | str) -> Path:
    path = folder / f"manifest-{next(_numbers)}.csv"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def csv_rows(rows) -> tuple[str, list[int]]:
    """The CSV text of `rows` after the header, and the file line on which each row starts."""
    text, starts = HEADER, []
    for row in rows:
        starts.append(1 + len(re.findall(r"\r\n|\r|\n", text)))
        buffer = io.StringIO()
        csv.writer(buffer).writerow(row)
        text += buffer.getvalue()
    return text, starts


def label_is_usable(cell: str) -> bool:
    """Labels are NFC-normalised; a format character is allowed only as ZWNJ/ZWJ between two non-ASCII letters."""
    label = unicodedata.normalize("NFC", cell.strip())

    def letter(c: str) -> bool:
        return not c.isascii() and unicodedata.category(c)[0] in "LM"

    def allowed(i: int, c: str) -> bool:
        if not unicodedata.category(c).startswith("C"):
            return True
        return c in "\u200c\u200d" and 0 < i < len(label) - 1 and letter(label[i - 1]) and letter(label[i + 1])

    return 0 < len(label) <= 200 and all(allowed(i, c) for i, c in enumerate(label))


@SETTINGS
@given(body=st.binary(max_size=300), with_header=st.booleans())
def test_any_bytes_give_one_item_or_one_failure_per_row_or_a_single_bad_argument(folder, body, with_header):
    manifest = write_manifest(folder, (HEADER.encode() if with_header else b"") + body)
    report = EnrollReport()
    try:
        items = items_from_manifest(manifest, report)
    except BadArgument as error:
        assert error.item == str(manifest) and error.problem
        return
    text = manifest.read_bytes().decode("utf-8-sig")
    records = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)][1:]
    assert len(items) + len(report.failed) == len(records)
    assert all(failure["item"].startswith(f"{manifest}:") and failure["error"] for failure in report.failed)


@SETTINGS
@given(rows=st.lists(st.lists(st.one_of(cells, st.sampled_from(["face", "voice", " face ", "x.jpg"])), max_size=5),
                     max_size=10))
def test_every_row_becomes_exactly_one_item_or_one_failure_naming_its_first_line(folder, rows):
    text, starts = csv_rows(rows)
    manifest = write_manifest(folder, text)
    report = EnrollReport()
    try:
        items = items_from_manifest(manifest, report)
    except BadArgument as error:  # only a cell the csv module cannot parse may refuse the whole file
        assert "not a readable UTF-8 CSV file" in error.problem
        return
    outcomes = {item.origin: ("item", item) for item in items}
    outcomes.update({failure["item"]: ("failure", failure["error"]) for failure in report.failed})
    assert len(outcomes) == len(items) + len(report.failed)  # no line named twice
    for row, line in zip(rows, starts):
        origin = f"{manifest}:{line}"
        if not any(cell.strip() for cell in row):
            assert origin not in outcomes  # blank rows are skipped, not failed
            continue
        kind, outcome = outcomes.pop(origin)
        usable = (len(row) >= 3 and label_is_usable(row[0]) and row[1].strip() in ("face", "voice")
                  and row[2].strip() != "" and "\x00" not in row[2])
        assert (kind == "item") == usable, (row, outcome)
        if kind == "item":
            assert (outcome.identity, outcome.modality) == (unicodedata.normalize("NFC", row[0].strip()), row[1].strip())
            assert outcome.path == manifest.parent / row[2].strip()
    assert outcomes == {}


@SETTINGS
@given(entries=st.lists(st.tuples(labels, st.sampled_from(["face", "voice"]),
                                  st.lists(file_names, min_size=1, max_size=3), st.booleans()), max_size=8))
def test_valid_rows_round_trip_with_unicode_commas_quotes_and_newlines(folder, entries):
    rows = [(label, modality, ("/" if absolute else "") + "/".join(parts)) for label, modality, parts, absolute
            in entries]
    text, starts = csv_rows(rows)
    manifest = write_manifest(folder, text)
    report = EnrollReport()
    items = items_from_manifest(manifest, report)
    assert report.failed == []
    assert [(item.identity, item.modality, item.origin) for item in items] == [  # labels stored in NFC form
        (unicodedata.normalize("NFC", label), modality, f"{manifest}:{line}") for (label, modality, _), line in zip(rows, starts)]
    for item, (_, _, raw) in zip(items, rows):
        raw = raw.strip()  # cells are stripped, so a name cannot start or end with white space
        assert item.path == (Path(raw) if raw.startswith("/") else manifest.parent / raw)


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """base/case/{sub/, other/, sub/in -> ../other, sub/out -> base/outside, sub/loop -> loop, sub/dangling} and,
    beside the case, base/case-evil/ (whose name starts like the root's)."""
    base = tmp_path_factory.mktemp("root")
    case = base / "case"
    (case / "sub").mkdir(parents=True)
    (case / "other").mkdir()
    (base / "outside").mkdir()
    (base / "case-evil").mkdir()
    (case / "other" / "x.jpg").write_bytes(b"x")
    (base / "outside" / "x.jpg").write_bytes(b"x")
    os.symlink("../other", case / "sub" / "in")
    os.symlink(base / "outside", case / "sub" / "out")
    os.symlink("loop", case / "sub" / "loop")
    os.symlink(base / "nowhere", case / "sub" / "dangling")
    return case


@SETTINGS
@given(parts=st.lists(st.sampled_from(["..", ".", "sub", "other", "in", "out", "loop", "dangling", "x.jpg", "case",
                                       "case-evil", "outside", "", "é ,x"]), min_size=1, max_size=8),
       anchor=st.sampled_from(["relative", "root", "system"]))
def test_with_a_root_a_path_is_accepted_exactly_when_it_resolves_inside(case, parts, anchor):
    root = case.resolve()
    listing = case / "sub" / "manifest.csv"
    raw = {"relative": "", "root": f"{case}/", "system": "/"}[anchor] + "/".join(parts)
    real = os.path.realpath(listing.parent / raw)
    inside = real == str(root) or real.startswith(str(root) + os.sep)
    try:
        path = resolve_listed_path(listing, raw, root, "manifest.csv:2")
    except BadArgument as error:
        assert not inside, (raw, real)
        assert error.item == "manifest.csv:2" and error.problem == f"path {raw!r} is outside --root {root}"
        return
    assert inside, (raw, real)
    assert path == Path(real)  # the checked, resolved path is the one to open
    unconfined = resolve_listed_path(listing, raw, None, "manifest.csv:2")
    assert unconfined == listing.parent / raw  # (an absolute raw path replaces the folder)
    assert os.path.realpath(unconfined) == real


@SETTINGS
@given(prefix=cells, suffix=cells)
def test_a_path_holding_nul_is_refused_with_or_without_root(case, prefix, suffix):
    for root in (None, case.resolve()):
        with pytest.raises(BadArgument, match="path holds a NUL character"):
            resolve_listed_path(case / "m.csv", prefix + "\x00" + suffix, root, "m.csv:2")


def test_the_header_must_name_the_columns_in_order(folder):
    for header in ("", "path,modality,identity", "identity,modality", "identity;modality;path", "identity,modality,path,extra"):
        manifest = write_manifest(folder, header + "\nx,face,a.jpg\n")
        with pytest.raises(BadArgument, match=f"first row must be the header {','.join(MANIFEST_COLUMNS)}"):
            items_from_manifest(manifest, EnrollReport())
    manifest = write_manifest(folder, "\ufeffIdentity , MODALITY,path,\nx,face,a.jpg\n")  # BOM, case, spaces
    assert [item.identity for item in items_from_manifest(manifest, EnrollReport())] == ["x"]
