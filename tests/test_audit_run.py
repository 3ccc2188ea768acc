"""fvmatch audit run: every good row answered, every bad row recorded, resumable, batched, confined by --root."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3

import pytest
from mediagen import run_cli

from fvmatch.audit.files import ResultsFile, read_queries
from fvmatch.audit.batch import answer_query, run_audit
from fvmatch.errors import BadArgument
from fvmatch.synth import CorpusSpec, write_corpus

# what may differ between two runs that give the same answers
VOLATILE = ("run_id", "answered_at", "timing_ms")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, CorpusSpec(identities=4, seed=5, faces_per_identity=2, clips_per_identity=2, clip_seconds=3.0),
                 workers=1)
    return out


@pytest.fixture(scope="module")
def enrolled(corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("galleries") / "case"
    result = run_cli("enroll", "--manifest", corpus / "manifest.csv", "--gallery", directory, "--json")
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture()
def gallery(enrolled, tmp_path):
    copy = tmp_path / "case"
    shutil.copytree(enrolled, copy)
    return copy


def write_queries(path, rows, header=("query_id", "modality", "path", "claimed_identity")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_results(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def stable(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in VOLATILE}


@pytest.fixture()
def case(tmp_path, corpus, media_dir):
    """A case folder: evidence files and a query file with good rows and every kind of bad one."""
    folder = tmp_path / "casefolder"
    shutil.copytree(corpus / "faces", folder / "faces")
    shutil.copytree(corpus / "voices", folder / "voices")
    for name in ("noface.jpg", "silence.wav", "text.jpg"):
        shutil.copy(media_dir / name, folder / name)
    outside = tmp_path / "outside.wav"
    shutil.copy(corpus / "voices/id00000/v0/00000.wav", outside)
    rows = [
        ("face-1", "face", "faces/id00001/v1/00001.jpg", ""),         # good: identify among faces
        ("voice-3", "voice", "voices/id00003/v0/00000.wav", ""),      # good: identify among voices
        ("claim-2", "face", "faces/id00002/v0/00000.jpg", "id00002"),  # good: verify a claim
        ("missing", "voice", "voices/nobody.wav", ""),
        ("no-face", "face", "noface.jpg", ""),
        ("silent", "voice", "silence.wav", ""),
        ("not-image", "face", "text.jpg", ""),
        ("smell", "smell", "faces/id00001/v1/00001.jpg", ""),
        ("face-1", "voice", "voices/id00001/v0/00000.wav", ""),       # duplicate query id
        ("", "face", "faces/id00001/v0/00000.jpg", ""),               # no query id
        ("bad-claim", "voice", "voices/id00002/v0/00000.wav", "nobody-here"),
        ("escape", "voice", "../outside.wav", ""),                    # outside --root
    ]
    return folder, write_queries(folder / "queries.csv", rows)


EXPECTED_FAILURES = {  # query id (or line) -> error kind
    "missing": "BadArgument", "no-face": "NoFaceFound", "silent": "TooLittleSpeech", "not-image": "UnreadableMedia",
    "smell": "unknown modality", "line 10": "duplicate query id", "line 11": "missing query id",
    "bad-claim": "UnknownIdentity", "escape": "path refused",
}


def key_of(record: dict) -> str:
    return f"line {record['line']}" if record["error_kind"] in ("duplicate query id", "missing query id") \
        else record["query_id"]


def test_audit_run_answers_good_rows_records_bad_ones_and_a_second_run_adds_nothing(gallery, case):
    folder, queries = case
    out = folder / "results.jsonl"
    args = ("audit", "run", "--queries", queries, "--out", out, "--gallery", gallery, "--against", "all",
            "--root", folder, "--json")
    first = run_cli(*args)
    assert first.returncode == 2, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["queries"], summary["answered_now"], summary["failed_now"], summary["ok"], summary["failed"]) == \
        (12, 3, 9, 3, 9)
    records = {key_of(record): record for record in read_results(out)}
    # the shipped reference calibrations decide each answered face-face and voice-voice query
    assert summary["matches"] == sum(r["status"] == "ok" and r["decision"] == "same person" for r in records.values())
    assert len(records) == 12
    assert {key: r["error_kind"] for key, r in records.items() if r["status"] == "failed"} == EXPECTED_FAILURES
    for key in EXPECTED_FAILURES:
        assert records[key]["error"] and records[key]["candidates"] == []
    # a query that is an enrolled item finds that very item first (its own embedding, score 1); a face's identity is
    # scored by the template of its faces, that item the best of them
    for key, identity in (("face-1", "id00001"), ("voice-3", "id00003")):
        top = records[key]["candidates"][0]
        best = top["references"][0]["score"] if key.startswith("face") else top["score"]
        assert (records[key]["status"], top["identity"], best) == ("ok", identity, pytest.approx(1.0, abs=1e-4))
        assert records[key]["sha256"] and records[key]["model_id"] == summary["model_id"]
    assert 0.9 < records["face-1"]["candidates"][0]["score"] < 1 - 1e-4  # the template of two faces, not the item
    claim = records["claim-2"]  # a claim against all: the claimed identity's best item of each trial type with evidence
    assert claim["task"] == "verify" and [c["identity"] for c in claim["candidates"]] == ["id00002", "id00002"]
    assert [(c["trial_type"], c["space"]) for c in claim["candidates"]] == [("face-face", "dlib-face template2"),
                                                                            ("face-voice", "sex")]
    assert claim["candidates"][0]["references"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    # the failures are listed on stderr, one line each naming the row
    assert f"fvmatch: failed: {queries}:6: noface.jpg: no face found" in first.stderr
    assert "Traceback" not in first.stderr

    before = out.read_bytes()
    second = run_cli(*args)
    assert second.returncode == 2
    again = json.loads(second.stdout)
    assert (again["answered_now"], again["failed_now"], again["already_done"], again["ok"], again["failed"]) == \
        (0, 0, 12, 3, 9)
    assert out.read_bytes() == before
    assert oct(out.stat().st_mode & 0o777) == oct(0o600)

    # both runs are in the hash-chained trail, with the query file's digest
    log = run_cli("audit", "log", "--command", "audit run", "--gallery", gallery, "--json")
    rows = json.loads(log.stdout)
    assert [row["result"]["answered_now"] for row in rows] == [3, 0]
    # the query file and every evidence file this run read, failed ones included
    assert rows[0]["inputs"][0]["path"] == str(queries.resolve())
    assert sorted(item["query_id"] for item in rows[0]["inputs"][1:]) == sorted(
        ["face-1", "voice-3", "claim-2", "no-face", "silent", "not-image", "bad-claim"])
    assert rows[0]["result"]["results"]["sha256"] is not None
    assert run_cli("audit", "log", "--verify", "--gallery", gallery).returncode == 0


def test_an_interrupted_run_resumes_where_it_stopped_and_ends_as_one_run_would(gallery, case, embedder):
    from fvmatch.gallery import Gallery

    folder, queries = case
    rows = read_queries(queries)
    whole, resumed = folder / "whole.jsonl", folder / "resumed.jsonl"
    with Gallery.open(gallery) as opened:
        run_audit(opened, embedder, rows, ResultsFile(whole), against="all", batch_size=4)
        lines = whole.read_bytes().splitlines(keepends=True)
        # a run killed while writing its third record: two whole lines and half of the next
        resumed.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
        results = ResultsFile(resumed)
        assert results.repaired_bytes == len(lines[2]) // 2 and len(results.latest) == 2
        summary = run_audit(opened, embedder, rows, results, against="all", batch_size=4)
    assert (summary.already_done, summary.answered + summary.failed_now) == (2, 10)
    assert [stable(r) for r in read_results(resumed)] == [stable(r) for r in read_results(whole)]


def test_batching_does_not_change_the_answers(gallery, case, embedder):
    from fvmatch.gallery import Gallery

    folder, queries = case
    rows = read_queries(queries)
    answers = {}
    with Gallery.open(gallery) as opened:
        for size in (1, 5, 32):
            out = folder / f"batch{size}.jsonl"
            run_audit(opened, embedder, rows, ResultsFile(out), against="all", batch_size=size)
            answers[size] = [(r["query_id"], r["status"], [(c["identity"], c["media_id"], round(c["score"], 4))
                                                           for c in r["candidates"]]) for r in read_results(out)]
    assert answers[1] == answers[5] == answers[32]


def test_retry_failed_answers_a_fixed_row_again_and_the_latest_record_wins(gallery, case, embedder, corpus):
    from fvmatch.gallery import Gallery

    folder, queries = case
    out = folder / "results.jsonl"
    with Gallery.open(gallery) as opened:
        run_audit(opened, embedder, read_queries(queries), ResultsFile(out))
        shutil.copy(corpus / "voices/id00000/v1/00001.wav", folder / "voices/nobody.wav")  # the missing file arrives
        plain = run_audit(opened, embedder, read_queries(queries), ResultsFile(out))
        assert plain.answered + plain.failed_now == 0
        retried = run_audit(opened, embedder, read_queries(queries), ResultsFile(out), retry_failed=True)
    # without --root the escaping row is answered, so 8 rows failed and 1 of them is fixed
    assert (retried.already_done, retried.answered, retried.failed_now) == (4, 1, 7)
    assert ResultsFile(out).latest["id missing"]["status"] == "ok"
    assert len(read_results(out)) == 12 + 8


def test_results_from_another_model_are_not_mixed_in(gallery, case):
    folder, queries = case
    out = folder / "results.jsonl"
    record = {"query_id": "face-1", "line": 2, "status": "ok", "model_id": "f" * 64, "error_kind": None}
    out.write_text(json.dumps(record) + "\n")
    result = run_cli("audit", "run", "--queries", queries, "--out", out, "--gallery", gallery)
    assert result.returncode == 2
    assert f"{out}: holds results from model ffffffffffffffff" in result.stderr.replace("\n", "")
    assert out.read_text() == json.dumps(record) + "\n"


def test_a_results_file_that_is_not_ours_is_refused(gallery, case):
    folder, queries = case
    out = folder / "notes.jsonl"
    out.write_text("dear diary\n")
    result = run_cli("audit", "run", "--queries", queries, "--out", out, "--gallery", gallery)
    assert result.returncode == 2 and "line 1 is not an fvmatch audit result" in result.stderr
    assert out.read_text() == "dear diary\n"


def test_a_second_run_on_the_same_results_file_is_refused_while_the_first_holds_it(tmp_path):
    out = tmp_path / "results.jsonl"
    with ResultsFile.exclusive(out):
        with pytest.raises(BadArgument, match="another audit run is writing"):
            with ResultsFile.exclusive(out):
                pass
    with ResultsFile.exclusive(out):  # released
        pass


@pytest.mark.parametrize("content, problem", [
    ("", "first row must be the header query_id,modality,path[,claimed_identity]"),
    ("identity,modality,path\nx,face,a.jpg\n", "first row must be the header"),
    ("query_id,modality,path,colour\n", "first row must be the header"),
    (b"query_id,modality,path\n\xff\xfe\n", "not a readable UTF-8 CSV file"),
])
def test_a_file_that_is_not_a_query_file_is_refused_whole(tmp_path, content, problem):
    path = tmp_path / "queries.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BadArgument, match=re.escape(problem)):
        read_queries(path)


def test_query_paths_are_relative_to_the_query_file_and_symlinks_out_of_root_are_refused(tmp_path):
    root = tmp_path / "case"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "sub" / "link.jpg")
    queries = write_queries(root / "sub" / "q.csv", [("a", "face", "a.jpg", ""), ("b", "face", "link.jpg", ""),
                                                     ("c", "face", str(tmp_path / "secret.jpg"), ""),
                                                     ("d", "face", "../../secret.jpg", "")])
    loose = {q.query_id: q for q in read_queries(queries)}
    assert loose["a"].path == root / "sub" / "a.jpg" and loose["b"].problem is None
    confined = {q.query_id: q for q in read_queries(queries, root.resolve())}
    assert confined["a"].problem is None
    for query_id in ("b", "c", "d"):
        assert confined[query_id].problem_kind == "path refused" and "outside --root" in confined[query_id].problem


def test_answer_query_gives_the_audit_record_for_one_query(enrolled, corpus, embedder):
    from fvmatch.gallery import Gallery

    with Gallery.open(enrolled) as opened:
        record = answer_query(opened, embedder, "voice", corpus / "voices/id00002/v1/00001.wav", against="voice", top=3)
        missing = answer_query(opened, embedder, "face", corpus / "nothing.jpg")
    assert record["status"] == "ok" and record["candidates"][0]["identity"] == "id00002"
    assert [c["rank"] for c in record["candidates"]] == [1, 2, 3]
    assert missing["status"] == "failed" and missing["error"] == "no such file"


def test_the_gallery_is_not_changed_by_an_audit_run_except_for_its_audit_row(gallery, case):
    folder, queries = case

    def content():
        connection = sqlite3.connect(gallery / "gallery.db")
        rows = {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in ("identities", "media")}
        connection.close()
        return rows

    before = content()
    run_cli("audit", "run", "--queries", queries, "--out", folder / "r.jsonl", "--gallery", gallery)
    assert content() == before
