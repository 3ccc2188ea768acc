"""fvmatch report: one self-contained HTML file for an audit run or one query, checked in a real headless Chromium.

The case: four synthetic identities enrolled under labels that try to break a page (a <script> tag, quotes and an
ampersand, Arabic), a calibrated checkpoint (same weights, so the same model id), and an audit run over a query file
with good rows and bad ones (one query id holding a right-to-left override, which labels may not hold).
"""
from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import re
import shutil
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest
from mediagen import run_cli, run_cli_here as fvmatch

from fvmatch.synth import CorpusSpec, write_corpus

LABELS = {
    "id00000": "<script>window.__pwned = 1; document.title = 'pwned'</script>Eve",
    "id00001": "O'Brien \"Bobby\" & Co",
    "id00002": "سارة بن علي (Sara)",
    "id00003": "Zoë",
}
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000")


def escaped(text: str) -> str:
    """A label as the page's HTML must hold it: escaped, the right-to-left override made visible."""
    return html.escape(text, quote=True).replace("\u202e", '<span class="cc">U+202E</span>')


def shown(label: str) -> str:
    """A label as the page displays it: invisible and direction characters as their code points."""
    return label.replace("\u202e", "U+202E")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def audit_log(gallery: Path, command: str) -> list[dict]:
    return json.loads(fvmatch("audit", "log", "--command", command, "--gallery", gallery, "--json").stdout)


# ----- the case ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, CorpusSpec(identities=4, seed=3, faces_per_identity=1, clips_per_identity=1, clip_seconds=3.0),
                 workers=1)
    with open(out / "labelled.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "modality", "path"])
        with open(out / "manifest.csv", encoding="utf-8") as manifest:
            for row in csv.DictReader(manifest):
                writer.writerow([LABELS[row["identity"]], row["modality"], row["path"]])
    return out


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    """The shipped model with a calibration of every trial type in the space that scores it, and of the joint space's
    same-modality trials too (fitted on synthetic scores: a test fixture)."""
    from fvmatch.calibration.fitting import fit, write_calibrated_checkpoint
    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, read_card
    from fvmatch.spaces.dlib_face import weight_files, weights_sha256
    from fvmatch.spaces.ge2e_voice import Ge2eVoiceSpace

    rng = np.random.default_rng(0)
    calibration = {"model_id": read_card(DEFAULT_CHECKPOINT)["model_id"], "data": "synthetic test scores",
                   "split": "val", "created": "2026-01-02T03:04:05+00:00"}
    space_ids = {"dlib-face": weights_sha256(weight_files()), "ge2e-voice": Ge2eVoiceSpace().model_id}
    for key, space in (("face-voice", None), ("face-face", None), ("voice-voice", None),
                       ("dlib-face face-face", "dlib-face"), ("ge2e-voice voice-voice", "ge2e-voice")):
        calibration[key] = fit(np.clip(rng.normal(0.85, 0.08, 600), -1, 1), np.clip(rng.normal(0.0, 0.3, 6000), -1, 1),
                               identities=60)
        if space:
            calibration[key] |= {"space": space, "space_model_id": space_ids[space]}
    path = tmp_path_factory.mktemp("models") / "calibrated.safetensors"
    write_calibrated_checkpoint(DEFAULT_CHECKPOINT, path, calibration)
    return path


@pytest.fixture(scope="module")
def case(corpus, calibrated, media_dir, tmp_path_factory):
    """A gallery of the labelled corpus and an audit run (calibrated model) over good and bad query rows."""
    folder = tmp_path_factory.mktemp("case")
    gallery = folder / "gallery"
    enrolled = fvmatch("enroll", "--manifest", corpus / "labelled.csv", "--gallery", gallery, "--json")
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["gallery_counts"] == {"identities": 4, "face": 4, "voice": 4}
    for name in ("noface.jpg", "silence.wav"):
        shutil.copy(media_dir / name, folder / name)
    queries = folder / "queries.csv"
    with open(queries, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query_id", "modality", "path", "claimed_identity"])
        writer.writerows([
            ["voice-1", "voice", corpus / "voices/id00001/v0/00000.wav", ""],
            ["face-2", "face", corpus / "faces/id00002/v0/00000.jpg", ""],
            ["claim-0", "face", corpus / "faces/id00000/v0/00000.jpg", LABELS["id00000"]],
            ["missing", "voice", "nobody.wav", ""],
            ["no\u202eface", "face", "noface.jpg", ""],
            ["silent", "voice", "silence.wav", ""],
        ])
    results = folder / "results.jsonl"
    run = fvmatch("audit", "run", "--queries", queries, "--out", results, "--gallery", gallery, "--model", calibrated,
                  "--top", "4")
    assert run.returncode == 2, run.stderr  # some rows fail, by design
    records = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    assert [r["status"] for r in sorted(records, key=lambda r: r["line"])] == ["ok"] * 3 + ["failed"] * 3
    return {"folder": folder, "gallery": gallery, "queries": queries, "results": results,
            "records": sorted(records, key=lambda r: r["line"])}


@pytest.fixture(scope="module")
def audit_report(case, calibrated):
    """The report of the audit run, written by a real `fvmatch report` process."""
    out = case["folder"] / "report.html"
    result = run_cli("report", "--results", case["results"], "--out", out, "--gallery", case["gallery"],
                     "--model", calibrated, "--json")
    assert result.returncode == 0, result.stderr
    return {"path": out, "document": json.loads(result.stdout), "html": out.read_text(encoding="utf-8")}


@pytest.fixture
def no_reference(monkeypatch):
    """No shipped reference calibration: only the model card's own judges scores."""
    from fvmatch.evidence import rules as evidence

    monkeypatch.setattr(evidence, "reference_calibration", lambda: {})


def section(page: str, anchor: str) -> str:
    """The HTML of one query's detail article."""
    match = re.search(rf'<article class="query [a-z]+" id="{anchor}">(.*?)</article>', page, re.S)
    assert match, anchor
    return match.group(1)


# ----- the audit-run report ---------------------------------------------------------------------------------------
def test_audit_report_lists_every_query_and_details_the_answered_ones(audit_report, case):
    document, page = audit_report["document"], audit_report["html"]
    records = case["records"]
    assert [q["query_id"] for q in document["queries"]] == [r["query_id"] for r in records]
    assert document["detailed"] == ["voice-1", "face-2", "claim-0"]
    assert document["sha256"] == sha256(audit_report["path"])
    assert document["bytes"] == audit_report["path"].stat().st_size
    assert stat.S_IMODE(audit_report["path"].stat().st_mode) == 0o600
    assert not list(audit_report["path"].parent.glob(".report.html.*"))  # no temporary left behind
    # every failed row shows its error, escaped
    for record in records[3:]:
        assert record["error"] and f"<bdi>{escaped(record['error'])}</bdi>" in page
    # each detailed query lists its candidates with their scores, as the results file holds them
    for number, record in enumerate(records[:3], start=1):
        article = section(page, f"q{number}")
        for candidate in record["candidates"]:
            assert f'<td class="identity"><bdi>{escaped(candidate["identity"])}</bdi></td>' in article
            reading = (candidate.get("readings") or {}).get(candidate["matched_modality"])
            shown = f"{reading['sex']} {reading['probability']:.2f}" if reading else f"{candidate['score']:.4f}"
            if reading and reading.get("age"):  # and its age band, where it was read
                shown += f" / {escaped(reading['age']['band'])} {reading['age']['probability']:.2f}"
            assert f'<td class="num">{shown}</td>' in article  # sex evidence: the item's reading
        assert "<img src=\"data:image/" in article and "Decision at 1.0% false-match rate" in article
    assert escaped("the shaded areas are the score distributions of same-person and different-person trials of "
                   "the model card's calibration (synthetic test scores, val, 2026-01-02T03:04:05+00:00)") in page


def test_audit_report_is_self_contained_and_escapes_every_label(audit_report):
    page = audit_report["html"]
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    references = re.findall(r'(?:src|href)="([^"]*)"|url\(([^)]*)\)', page)
    assert references and all(ref.strip('"').startswith(("data:", "#")) for pair in references for ref in pair if ref)
    assert "<script" not in page.replace("&lt;script", "")  # the label's tag is text, never markup
    assert "&lt;script&gt;window.__pwned = 1; document.title = &#x27;pwned&#x27;&lt;/script&gt;Eve" in page
    assert "O&#x27;Brien &quot;Bobby&quot; &amp; Co" in page
    assert "<bdi>سارة بن علي (Sara)</bdi>" in page
    assert '<bdi>no<span class="cc">U+202E</span>face</bdi>' in page and "\u202e" not in page


def test_each_identity_face_is_embedded_once_and_reused(audit_report, case):
    page = audit_report["html"]
    rules = re.findall(r'\.(f\d+)\{background-image:url\("data:image/jpeg;base64,', page)
    labels = {c["identity"] for r in case["records"][:3] for c in r["candidates"]}
    assert len(rules) == len(labels) == 4
    uses = {rule: page.count(f'class="face {rule}"') for rule in rules}
    assert sum(uses.values()) == sum(len(r["candidates"]) for r in case["records"][:3])
    assert max(uses.values()) > 1  # an identity in several answers: its one picture is referenced each time


def test_audit_report_shows_the_run_rows_and_is_recorded_in_the_trail(audit_report, case):
    from fvmatch.audit.trail import verify_chain
    from fvmatch.gallery import Gallery

    page, document = audit_report["html"], audit_report["document"]
    runs = audit_log(case["gallery"], "audit run")
    assert len(runs) == 1 and document["audit_rows_shown"] == [runs[0]["id"]]
    assert document["run_ids"] == [runs[0]["result"]["run_id"]]
    assert f"{runs[0]['row_hash'][:16]}…" in page and "Audit trail intact" in page
    assert f"byte for byte the one audit-run row {runs[0]['id']} recorded" in page
    assert page.count("matches the trail") == 3
    reports = audit_log(case["gallery"], "report")
    row = next(r for r in reports if r["id"] == document["audit_row"])
    assert row["inputs"] == [{"path": str(case["results"].resolve()), "sha256": sha256(case["results"])}]
    assert row["result"]["report"] == {"path": str(audit_report["path"].resolve()), "sha256": document["sha256"]}
    assert row["result"]["query_ids"] == [r["query_id"] for r in case["records"]]
    with Gallery.open(case["gallery"]) as gallery:
        assert verify_chain(gallery).ok


# ----- in a real browser --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver. Missing: skipped on a workstation, a failure under CI."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver_path))
               if not Path(path).is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = f"the browser test needs {', '.join(missing)} (Debian: chromium chromium-driver; .ci/install)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_the_audit_report_renders_in_chromium_with_its_pictures_names_and_errors(browser, audit_report, case):
    from selenium.webdriver.common.by import By

    browser.get(audit_report["path"].as_uri())
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
    images = browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == 6  # per answered query: the query picture and the score plot
    assert all(complete and width > 0 for complete, width in images), images
    # the enrolled faces are CSS backgrounds (one copy per identity): each must decode too
    widths = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const urls = [...new Set([...document.querySelectorAll('.face')].map(
            e => getComputedStyle(e).backgroundImage.slice(5, -2)))];
        Promise.all(urls.map(u => new Promise(ok => { const i = new Image(); i.onload = () => ok(i.naturalWidth);
            i.onerror = () => ok(0); i.src = u; }))).then(done);""")
    assert len(widths) == 4 and all(width > 0 for width in widths), widths
    for number, record in enumerate(case["records"][:3], start=1):
        article = browser.find_element(By.ID, f"q{number}")
        names = [cell for cell in article.find_elements(By.CSS_SELECTOR, "td.identity")]
        assert [cell.text for cell in names] == [shown(c["identity"]) for c in record["candidates"]]
        assert all(cell.is_displayed() for cell in names)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.summary tr.failed")
    assert [row.find_element(By.CSS_SELECTOR, "td.error").text.rsplit(" (", 1)[0] for row in rows] == [
        record["error"] for record in case["records"][3:]]
    assert all(row.is_displayed() for row in rows)
    # the <script> label is on screen as text and never ran
    assert shown(LABELS["id00000"]) in browser.find_element(By.TAG_NAME, "body").text
    assert browser.execute_script("return [window.__pwned === undefined, document.scripts.length, document.title]") == [
        True, 0, "fvmatch report: audit run, 6 queries"]
    browser.save_screenshot(str(case["folder"] / "report.png"))


# ----- one query --------------------------------------------------------------------------------------------------
def test_a_face_query_report_answers_now_with_the_trial_types_that_hold(case, corpus, calibrated, tmp_path):
    out = tmp_path / "face.html"
    face = corpus / "faces/id00003/v0/00000.jpg"
    result = fvmatch("report", "--face", face, "--against", "all", "--top", "3", "--out", out, "--gallery",
                     case["gallery"], "--model", calibrated, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "query" and document["sha256"] == sha256(out)
    assert document["queries"][0]["status"] == "ok" and len(document["queries"]) == 1
    page = out.read_text(encoding="utf-8")
    article = section(page, "q1")
    assert "with the face that was compared boxed" in article
    kinds = set(re.findall(r"<td>(face-face|face-voice) <span class='small'>\((dlib-face|joint|sex) ", article))
    # face-voice trials are weighed by the sex read from each side, never by the synthetic joint space
    assert kinds == {("face-face", "dlib-face"), ("face-voice", "sex")}
    assert escaped("sex and age evidence (face-voice): sex read from the face") in article
    # each voice's row shows its reading, sex and age band, in place of a score: three voices (top 3)
    cells = re.findall(r'<td class="num">(female|male) (\d\.\d\d) / (under 30|30-49|50 and over) (\d\.\d\d)</td>', article)
    assert len(cells) == 3 and all(0.5 <= float(sex) <= 1 and 0.3 < float(band) <= 1 for _, sex, _, band in cells)
    assert escaped("dlib-face face-face: the shaded areas are the score distributions of same-person and "
                   "different-person trials of the model card's calibration") in article
    assert "<dt>searched</dt><dd>face + voice</dd>" in article
    # the query went into the trail first (the report shows that row), then the report's own row
    answered, reported = audit_log(case["gallery"], "report query")[-1], audit_log(case["gallery"], "report")[-1]
    assert reported["id"] == answered["id"] + 1 == document["audit_row"]
    assert answered["inputs"] == [{"path": str(face.resolve()), "sha256": sha256(face)}]
    assert answered["result"]["candidates"][0]["identity"] == document["queries"][0]["identity"]
    assert f"{answered['row_hash'][:16]}…" in page and "the row this report appended for its query" in page
    assert reported["result"]["report"]["sha256"] == document["sha256"]


def test_a_voice_query_report_draws_the_recording_and_says_there_is_no_calibration(case, corpus, no_reference,
                                                                                     tmp_path):
    out = tmp_path / "voice.html"
    result = fvmatch("report", "--voice", corpus / "voices/id00002/v0/00000.wav", "--out", out,
                     "--gallery", case["gallery"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out} (")
    page = out.read_text(encoding="utf-8")
    assert re.search(r'<img src="data:image/jpeg;base64,[^"]+" alt="the query"><figcaption>the query recording, '
                     r"all 3\.0 s \(16000 Hz\)", page)
    assert ("<strong>Uncalibrated:</strong> the 4 <strong>ge2e-voice voice-voice</strong> scores shown here have no "
            "calibration") in page
    assert escaped("ge2e-voice voice-voice: there is no ge2e-voice voice-voice calibration") in page
    assert ("<tr><td>ge2e-voice voice-voice<br><span class='small muted'>4 shown</span></td><td colspan='7' "
            "class='warning'>not calibrated") in page


def test_a_query_that_cannot_be_answered_is_one_line_and_writes_nothing(case, media_dir, tmp_path):
    before = len(audit_log(case["gallery"], "report"))
    result = fvmatch("report", "--face", media_dir / "noface.jpg", "--out", tmp_path / "r.html", "--gallery",
                     case["gallery"])
    assert result.returncode == 2 and not (tmp_path / "r.html").exists()
    assert result.stderr.strip().count("\n") == 0 and "no face found" in result.stderr
    assert len(audit_log(case["gallery"], "report")) == before


# ----- refusals ---------------------------------------------------------------------------------------------------
def rewritten(results: Path, out: Path, **changes) -> Path:
    lines = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    out.write_text("".join(json.dumps({**line, **changes}) + "\n" for line in lines), encoding="utf-8")
    return out


@pytest.mark.parametrize("make, problem", [
    (lambda case, tmp: rewritten(case["results"], tmp / "other-model.jsonl", model_id="ab" * 32),
     "holds results from model abababababababab, but the gallery is pinned to"),
    (lambda case, tmp: rewritten(case["results"], tmp / "other-gallery.jsonl", run_id="0123456789abcdef"),
     "is in the audit trail of"),
    (lambda case, tmp: case["queries"], "line 1 is not an fvmatch audit result"),
    (lambda case, tmp: (tmp / "cut.jsonl").write_bytes(case["results"].read_bytes()[:-40]) and tmp / "cut.jsonl",
     "ends in a partial line"),
])
def test_results_of_another_model_gallery_or_no_audit_are_refused(case, tmp_path, make, problem):
    results = make(case, tmp_path)
    before = len(audit_log(case["gallery"], "report"))
    result = fvmatch("report", "--results", results, "--out", tmp_path / "r.html", "--gallery", case["gallery"])
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"fvmatch: error: {results}: ") and problem in result.stderr, result.stderr
    assert not (tmp_path / "r.html").exists() and len(audit_log(case["gallery"], "report")) == before


def test_detail_limit_and_query_id_choose_the_detailed_queries(case, calibrated, tmp_path):
    out = tmp_path / "r.html"
    common = ("--results", case["results"], "--out", out, "--gallery", case["gallery"], "--model", calibrated, "--json")
    limited = fvmatch("report", *common, "--detail-limit", "1")
    assert limited.returncode == 0, limited.stderr
    assert json.loads(limited.stdout)["detailed"] == ["voice-1"]
    chosen = fvmatch("report", *common, "--query-id", "silent", "--query-id", "claim-0")
    assert json.loads(chosen.stdout)["detailed"] == ["claim-0", "silent"]
    page = out.read_text(encoding="utf-8")
    assert "<strong>Failed:</strong> <bdi>silence.wav: too little speech" in section(page, "q6")
    unknown = fvmatch("report", *common, "--query-id", "nope")
    assert unknown.returncode == 2 and "'nope' is not a query of" in unknown.stderr
    mixed = fvmatch("report", "--face", case["queries"], "--query-id", "x", "--out", out, "--gallery", case["gallery"])
    assert mixed.returncode == 2 and "--query-id: applies to --results" in mixed.stderr


def test_a_gone_or_changed_enrolled_face_or_query_is_named_not_shown(case, corpus, calibrated, tmp_path):
    """Evidence integrity: a file no longer matching its recorded sha256 is never shown as if it were the same."""
    evidence = tmp_path / "evidence"
    shutil.copytree(corpus / "faces", evidence / "faces")
    shutil.copytree(corpus / "voices", evidence / "voices")
    gallery = tmp_path / "gallery"
    shutil.copytree(case["gallery"], gallery)
    connection = sqlite3.connect(gallery / "gallery.db")
    connection.execute("UPDATE media SET source_path = replace(source_path, ?, ?)", [str(corpus), str(evidence)])
    connection.commit()
    connection.close()
    for path in (evidence / "faces/id00001").rglob("*.jpg"):
        path.unlink()
    for path in (evidence / "faces/id00002").rglob("*.jpg"):
        path.write_bytes(path.read_bytes() + b"\x00")  # still a valid JPEG, but not the enrolled bytes
    results = rewritten(case["results"], tmp_path / "results.jsonl")
    lines = results.read_text(encoding="utf-8").replace(str(corpus), str(evidence))
    results.write_text(lines, encoding="utf-8")
    changed_query = evidence / "voices/id00001/v0/00000.wav"
    changed_query.write_bytes(changed_query.read_bytes()[:-2] + b"\x01\x02")
    out = tmp_path / "r.html"
    result = fvmatch("report", "--results", results, "--out", out, "--gallery", gallery, "--model", calibrated)
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert re.search(r"enrolled face #\d+ not shown: the file is gone: " + re.escape(str(evidence / "faces/id00001")), page)
    assert re.search(r"enrolled face #\d+ not shown: " + re.escape(str(evidence / "faces/id00002")) + r"\S+ no longer "
                     "matches the sha256 recorded at enrolment", page)
    assert len(re.findall(r"\.f\d+\{background-image", page)) == 2  # only the two intact identities' faces
    assert "query not shown: " + str(changed_query) + " no longer matches the sha256 recorded when the query was " \
           "answered" in section(page, "q1")
    assert "matches none of the results files the audit-run rows recorded" in page  # the results were edited


def test_an_out_path_that_cannot_be_written_is_refused_before_any_work(case, tmp_path):
    before = len(audit_log(case["gallery"], "report"))
    missing = fvmatch("report", "--results", case["results"], "--out", tmp_path / "no" / "r.html",
                      "--gallery", case["gallery"])
    assert missing.returncode == 2 and missing.stderr.strip() == (
        f"fvmatch: error: {tmp_path / 'no' / 'r.html'}: its directory does not exist")
    folder = fvmatch("report", "--results", case["results"], "--out", tmp_path, "--gallery", case["gallery"])
    assert folder.returncode == 2 and "exists and is not a regular file" in folder.stderr
    assert len(audit_log(case["gallery"], "report")) == before


def test_a_report_read_with_another_calibration_than_the_audit_used_says_so(case, tmp_path):
    out = tmp_path / "r.html"
    result = fvmatch("report", "--results", case["results"], "--out", out, "--gallery", case["gallery"], "--json")
    assert result.returncode == 0, result.stderr
    warning = ("WARNING: some results were answered under calibration created 2026-01-02T03:04:05+00:00; the model "
               "card read for this report has no calibration")
    assert any(finding.startswith(warning) for finding in json.loads(result.stdout)["findings"])
    page = out.read_text(encoding="utf-8")
    # the scores shown were judged by the calibration the audit used: not uncalibrated, though the card has none now
    assert escaped(warning) in page and "Uncalibrated:" not in page
    assert "ge2e-voice</strong> (" in page and "calibrated by <bdi>model card: synthetic test scores</bdi>" in page


# ----- what the scores shown rest on, per space -----------------------------------------------------------------
def dlib_face_id() -> str:
    from fvmatch.spaces.dlib_face import weight_files, weights_sha256

    return weights_sha256(weight_files())


def header(page: str) -> str:
    return page[page.index("<header>"): page.index("</header>")]


def test_a_face_face_report_describes_dlib_face_and_says_nothing_of_the_joint_space(case, corpus, no_reference,
                                                                                    tmp_path):
    out = tmp_path / "face.html"
    result = fvmatch("report", "--face", corpus / "faces/id00003/v0/00000.jpg", "--against", "face", "--out", out,
                     "--gallery", case["gallery"])
    assert result.returncode == 0, result.stderr
    page, model_id = out.read_text(encoding="utf-8"), dlib_face_id()
    assert "face-face in <strong>dlib-face</strong> (<code>" + model_id[:16] + "</code>): 4 scores, " \
           '<span class="warning">4 uncalibrated</span>' in header(page)
    assert ("<strong>Uncalibrated:</strong> the 4 <strong>dlib-face face-face</strong> scores shown here have no "
            "calibration") in header(page)
    assert "joint" not in header(page).replace("pinned to the joint checkpoint", "")
    assert "Synthetic-trained" not in page
    # the joint checkpoint's card (its synthetic training data) only folded away, as what the gallery is pinned to
    card = re.search(r"no score shown here came from it\.</p><details><summary>its model card</summary>(.*?)</details>",
                     page, re.S)
    assert card and page.count("SYNTHETIC DATA ONLY") == card.group(1).count("SYNTHETIC DATA ONLY") == 1
    row = re.search(r"<tr><td class='space'><strong>dlib-face</strong></td>(.*?)</tr>", page).group(1)
    assert row == ("<td>face-face</td><td><bdi>dlib&#x27;s ResNet face descriptor (128-D, weights from "
                   "face-recognition-models), pretrained on real faces</bdi></td><td class='small'><code>"
                   f"{model_id}</code></td><td class='num'>4</td><td class='small'>"
                   '<span class="warning">none</span></td>')
    assert "No calibration judged the scores of dlib-face face-face" in section(page, "q1")


def test_a_score_judged_by_the_reference_calibration_names_it_and_no_uncalibrated_banner(case, corpus, monkeypatch,
                                                                                          tmp_path):
    from fvmatch.evidence import rules as evidence
    from fvmatch.calibration.fitting import fit

    rng = np.random.default_rng(1)
    entry = fit(rng.normal(0.8, 0.08, 400), rng.normal(0.1, 0.25, 4000), identities=40) | {
        "reference": True, "data": "a named public set (test)", "space": "dlib-face",
        "space_model_id": dlib_face_id()}
    monkeypatch.setattr(evidence, "reference_calibration", lambda: {"dlib-face face-face": entry})
    out = tmp_path / "face.html"
    result = fvmatch("report", "--face", corpus / "faces/id00003/v0/00000.jpg", "--against", "face", "--out", out,
                     "--gallery", case["gallery"])
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert "Uncalibrated" not in page and "Synthetic-trained" not in page
    assert "4 scores, 4 calibrated by <bdi>reference: a named public set (test)</bdi>" in header(page)
    assert ("<tr><td>dlib-face face-face<br><span class='small muted'>4 shown</span></td><td class='small'>reference: "
            "<bdi>a named public set (test)</bdi></td><td class='num'>400 / 4,000 / 40</td>") in page
    article = section(page, "q1")
    assert escaped("dlib-face face-face: the shaded areas are the score distributions of same-person and "
                   "different-person trials of fvmatch's reference calibration (a named public set (test))") in article
    assert len(re.findall(r'<td class="num">[+-]\d+\.\d\d</td>', article)) == 4  # every candidate has its LR


def test_joint_space_scores_carry_the_synthetic_warning_and_name_the_checkpoint(case, corpus, no_reference,
                                                                                tmp_path):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, read_card

    gallery = tmp_path / "gallery"
    shutil.copytree(case["gallery"], gallery)
    queries = tmp_path / "queries.csv"
    queries.write_text(f"query_id,modality,path\nj,face,{corpus / 'faces/id00001/v0/00000.jpg'}\n", encoding="utf-8")
    results = tmp_path / "results.jsonl"
    run = fvmatch("audit", "run", "--queries", queries, "--out", results, "--gallery", gallery, "--space", "joint",
                  "--against", "all", "--top", "2")
    assert run.returncode == 0, run.stderr
    out = tmp_path / "r.html"
    result = fvmatch("report", "--results", results, "--out", out, "--gallery", gallery)
    assert result.returncode == 0, result.stderr
    page, card = out.read_text(encoding="utf-8"), read_card(DEFAULT_CHECKPOINT)
    banner = ('<div class="banner bad"><strong>Synthetic-trained joint space.</strong> 4 joint face-face and joint '
              f"face-voice scores shown here come from the joint checkpoint <code>{card['model_id'][:16]}</code>, "
              f"trained on <bdi>{escaped(card['training_data'])}</bdi>: they carry no weight on real people.")
    assert banner in header(page)
    assert ("<strong>Uncalibrated:</strong> the 2 <strong>joint face-face</strong> scores; the 2 <strong>joint "
            "face-voice</strong> scores shown here have no calibration") in header(page)
    assert "It scored the joint scores shown, and the gallery is pinned to it." in page
    assert "fvmatch&#x27;s joint face-voice checkpoint, trained on SYNTHETIC DATA ONLY" in page


# ----- the candidates' faces: the matched item ------------------------------------------------------------------
def test_a_candidate_shows_the_face_that_matched_and_a_voice_match_its_identity_face(case, corpus, tmp_path):
    from PIL import Image, ImageOps

    gallery = tmp_path / "gallery"
    shutil.copytree(case["gallery"], gallery)
    original = corpus / "faces/id00003/v0/00000.jpg"
    mirrored = tmp_path / "zoe-mirrored.jpg"
    ImageOps.mirror(Image.open(original)).save(mirrored, quality=95)
    enrolled = fvmatch("enroll", "--identity", LABELS["id00003"], "--face", mirrored, "--gallery", gallery)
    assert enrolled.returncode == 0, enrolled.stderr
    connection = sqlite3.connect(gallery / "gallery.db")
    with connection:  # the mirrored copy becomes the identity's best-detected face
        connection.execute("UPDATE media SET quality = 2 WHERE source_path = ?", [str(mirrored.resolve())])
        (mirrored_id,) = connection.execute("SELECT id FROM media WHERE source_path = ?",
                                            [str(mirrored.resolve())]).fetchone()
        (original_id,) = connection.execute("SELECT id FROM media WHERE source_path = ?", [str(original)]).fetchone()
    connection.close()
    face_page, voice_page = tmp_path / "face.html", tmp_path / "voice.html"
    assert fvmatch("report", "--face", original, "--against", "face", "--out", face_page, "--gallery",
                   gallery).returncode == 0
    assert fvmatch("report", "--voice", corpus / "voices/id00003/v0/00000.wav", "--against", "voice", "--out",
                   voice_page, "--gallery", gallery).returncode == 0

    def first_row(page: str) -> str:
        return re.search(r'<table class="candidates">.*?<tbody><tr>(.*?)</tr>', section(page, "q1"), re.S).group(1)

    matched = first_row(face_page.read_text(encoding="utf-8"))
    assert f"face #{original_id}: <code" in matched  # the item that matched ...
    assert re.search(rf'aria-label="the matched face of Zoë" title="face #{original_id}: {re.escape(str(original))}">'
                     r'</span><span class="facecap">matched face</span>', matched)  # ... is the face shown
    voice = first_row(voice_page.read_text(encoding="utf-8"))
    assert re.search(rf'aria-label="the enrolled face of Zoë, not the matched item \(a voice\)" title="face '
                     rf'#{mirrored_id}: {re.escape(str(mirrored.resolve()))}"></span><span class="facecap">enrolled '
                     r"face; the match was a voice</span>", voice)


# ----- pictures -------------------------------------------------------------------------------------------------
def test_rank_numbers_of_ten_scores_within_a_hundredth_do_not_overlap():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation

    from fvmatch.case_report.score_plots import LABEL_GAP, _number_lines, _spread, score_plot

    scores = [(rank, 0.95 - 0.001 * rank) for rank in range(1, 11)]
    for xlim in ((-1.0, 1.0), (0.93, 0.96)):  # the whole axis, and the close-up strip
        figure = Figure(figsize=(7.5, 2.6), dpi=100)
        canvas = FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.set_xlim(*xlim)
        _number_lines(axes, scores)
        canvas.draw()
        boxes = sorted(((text.get_bbox_patch().get_window_extent(canvas.get_renderer()), text.get_text())
                        for text in axes.texts if isinstance(text, Annotation)), key=lambda item: item[0].x0)
        assert [label for _, label in boxes] == [str(rank) for rank in range(10, 0, -1)]  # still in score order
        assert all(left.x1 <= right.x0 for (left, _), (right, _) in zip(boxes, boxes[1:]))
    places = _spread([0.5] * 10, LABEL_GAP)
    assert places == pytest.approx([0.5 + LABEL_GAP * (k - 4.5) for k in range(10)])
    assert _spread([0.99, 0.995, 1.0], LABEL_GAP)[-1] == pytest.approx(1 - LABEL_GAP / 2)  # kept inside the plot
    record = {"candidates": [{"rank": rank, "score": score, "space": "dlib-face", "trial_type": "face-face"}
                             for rank, score in scores]}
    _, sentences = score_plot(record, {})
    assert sentences == ["dlib-face face-face: there is no dlib-face face-face calibration (neither fvmatch's "
                         "reference calibration nor the model card's): no same-person and different-person score "
                         "distributions to compare with, no likelihood ratios and no decisions. The plot shows the "
                         "candidates' raw scores only; the 10 best lie within 0.0090 of each other, so the strip "
                         "beneath spreads them out, numbered by rank."]


@pytest.mark.parametrize("size, shown, scale", [((2000, 1125), (720, 405), 0.36), ((128, 100), (384, 300), 3)])
def test_the_query_photo_is_shown_at_a_useful_size_with_its_face_boxed(tmp_path, size, shown, scale):
    import base64
    import io

    from PIL import Image

    from fvmatch.case_report.pictures import BOX_COLOUR, query_picture

    path = tmp_path / "query.png"
    Image.new("RGB", size, (90, 90, 90)).save(path)
    box = [size[0] * 0.25, size[1] * 0.25, size[0] * 0.75, size[1] * 0.75]
    picture = query_picture({"modality": "face", "resolved_path": str(path), "sha256": sha256(path),
                             "quality": {"box": box, "faces_in_image": 1}})
    image = Image.open(io.BytesIO(base64.b64decode(picture.uri.split(",", 1)[1]))).convert("RGB")
    assert image.size == shown
    assert picture.note.startswith(f"the query image ({size[0]}x{size[1]}, shown ")
    x, y = round(box[0] * scale) + 1, round((box[1] + box[3]) / 2 * scale)  # on the box's left edge
    assert all(abs(a - b) < 40 for a, b in zip(image.getpixel((x, y)), BOX_COLOUR))
    assert all(abs(a - 90) < 10 for a in image.getpixel((shown[0] // 2, shown[1] // 2)))  # inside: the photo


def test_results_answered_under_other_reference_calibrations_are_a_finding(no_reference):
    from fvmatch.case_report import calibration_findings

    record = {"status": "ok", "calibration": {"fmr": 0.01, "created": None, "reference": ["a named public set"]}}
    assert calibration_findings([record], {"model_id": "m"}) == [
        "WARNING: some results were answered under fvmatch reference calibrations (a named public set) other than "
        "this fvmatch's (none), which the score plots use"]
    assert calibration_findings([{**record, "calibration": {**record["calibration"], "reference": []}}],
                                {"model_id": "m"}) == []


# ----- the templates ------------------------------------------------------------------------------------------------
HOSTILE = "<script>alert('x')</script> \"O'Brien\" & \u202eevil\u200b"


def test_every_value_a_template_prints_is_escaped_and_shows_its_invisible_characters():
    from fvmatch.case_report.page import environment

    templates = environment()
    assert templates.autoescape is True
    page = templates.from_string('<p>{{ value }}</p><p>{{ value|bdi }}</p><i title="{{ value|attribute }}"></i>'
                                 "<p>{{ value ~ '!' }}</p><p>{{ missing_is_none }}</p>")
    shown = ('&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &quot;O&#x27;Brien&quot; &amp; '
             '<span class="cc">U+202E</span>evil<span class="cc">U+200B</span>')
    assert page.render(value=HOSTILE, missing_is_none=None) == (
        f"<p>{shown}</p><p><bdi>{shown}</bdi></p>"
        '<i title="&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &quot;O&#x27;Brien&quot; &amp; U+202EevilU+200B">'
        f"</i><p>{shown}!</p><p></p>")


def test_no_template_lets_a_value_through_unescaped():
    from fvmatch.case_report.page import TEMPLATES

    sources = {path.name: path.read_text(encoding="utf-8") for path in TEMPLATES.iterdir()}
    assert {"report.html.j2", "sections.html.j2", "macros.html.j2", "report.css"} <= set(sources)
    for name, source in sources.items():
        for bypass in ("|safe", "| safe", "autoescape false", "Markup"):
            assert bypass not in source, (name, bypass)
    assert CSP not in sources["report.html.j2"] and "{{ csp }}" in sources["report.html.j2"]  # one policy, page.CSP


def test_an_indented_template_line_continues_the_line_above():
    from fvmatch.case_report.page import template_source

    assert template_source("<tr>\n  <td>1</td>\n  {% if x %}\n    <td>2</td>\n  {% endif %}\n</tr>\n") == (
        "<tr><td>1</td>{% if x %}<td>2</td>{% endif %}\n</tr>\n")
    assert template_source("<p>scores shown\n  here: {{ n }}\n  more</p>") == "<p>scores shown here: {{ n }} more</p>"


def test_the_cli_help_does_not_import_jinja2():
    import subprocess
    import sys

    for argv in (["--help"], ["report", "--help"]):
        probe = ("import sys\nfrom fvmatch import cli\nsys.argv = ['fvmatch', *%r]\ntry:\n    cli.main()\n"
                 "except SystemExit:\n    pass\nprint('JINJA2' if 'jinja2' in sys.modules else 'NO-JINJA2')" % argv)
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert done.stdout.splitlines()[-1] == "NO-JINJA2", done.stderr
