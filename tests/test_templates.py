"""Identity templates: a face question scored against a person from their first references at once, on real photos."""
from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import pytest

from mediagen import REALMEDIA, run_cli_here

FACES = REALMEDIA / "faces"
PEOPLE = {"vox1_Freida_Pinto": 3, "fr_barack_obama": 2, "fr_joe_biden": 1}  # photos enrolled of each


def photos(person: str) -> list:
    return sorted((FACES / person).glob("*.jpg"))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Three people enrolled from 3, 2 and 1 real photos."""
    if not FACES.is_dir():
        pytest.skip(f"{REALMEDIA} is absent: the real photos of ../shared/realmedia are needed (CI always has them)")
    directory = tmp_path_factory.mktemp("templates") / "gallery"
    for person, count in PEOPLE.items():
        faces = [arg for path in photos(person)[:count] for arg in ("--face", path)]
        enrolled = run_cli_here("enroll", "--identity", person, *faces, "--gallery", directory)
        assert enrolled.returncode == 0, enrolled.stderr
    return directory


def stored(gallery, person: str) -> tuple[list[int], np.ndarray]:
    with sqlite3.connect(gallery / "gallery.db") as db:
        rows = db.execute("SELECT media.id, vectors.embedding FROM media JOIN identities ON identities.id = "
                          "media.identity_id JOIN vectors ON vectors.media_id = media.id AND vectors.space = "
                          "'dlib-face' WHERE identities.label = ? ORDER BY media.id", [person]).fetchall()
    return [row[0] for row in rows], np.stack([np.frombuffer(row[1], np.float32) for row in rows])


def test_a_face_is_scored_against_each_identity_s_template_and_shows_the_references_that_carried_it(gallery):
    from fvmatch.analysis.templates import template_vector

    question = photos("vox1_Freida_Pinto")[5]
    embedded = json.loads(run_cli_here("embed", "--face", question, "--space", "dlib-face", "--json").stdout)
    query = np.asarray(embedded["spaces"]["dlib-face"]["embedding"], np.float32)
    answer = json.loads(run_cli_here("identify", "--face", question, "--gallery", gallery, "--json").stdout)
    (group,) = answer["trials"]
    first, *others = group["candidates"]
    assert first["identity"] == "vox1_Freida_Pinto" and first["log10_lr"] > 0
    ids, vectors = stored(gallery, "vox1_Freida_Pinto")
    cosines = vectors @ query
    # the template's cosine, each reference's own, the best first, and the best one is the row's matched item
    assert first["score"] == pytest.approx(float(template_vector(vectors) @ query), abs=1e-5)
    assert [ref["media_id"] for ref in first["references"]] == [ids[i] for i in np.argsort(-cosines)]
    assert [ref["score"] for ref in first["references"]] == pytest.approx(sorted(cosines, reverse=True), abs=1e-5)
    assert first["media_id"] == first["references"][0]["media_id"] and first["items_compared"] == 3
    # judged by the map of templates of three references: the score names itself, and its calibration
    assert group["space"] == "dlib-face" and first["space"] == "dlib-face template3"
    assert "dlib-face template3 face-face calibration" in first["note"]
    assert first["calibration"].startswith("reference: fvmatch reference faces 1: templates of each person's first 3")
    by_name = {candidate["identity"]: candidate for candidate in others}
    assert len(by_name["fr_barack_obama"]["references"]) == 2
    assert "template2 face-face" in by_name["fr_barack_obama"]["note"]
    # one reference: its own cosine under the single-photo map, no template
    single = by_name["fr_joe_biden"]
    assert "references" not in single and "reference dlib-face face-face calibration" in single["note"]
    assert [candidate["log10_lr"] for candidate in group["candidates"]] == sorted(
        (candidate["log10_lr"] for candidate in group["candidates"]), reverse=True)  # ranked by LR across sizes
    text = run_cli_here("identify", "--face", question, "--gallery", gallery)
    row = re.search(r"│ +1 │ vox1_Freida_Pinto │ ([0-9.]+) │ +([-+0-9.]+) │ same person +│ (\d) faces │", text.stdout)
    assert row and row.groups() == (f"{first['score']:.4f}", f"{first['log10_lr']:+.2f}", "3")
    best = first["references"][0]
    assert (f"rank 1, vox1_Freida_Pinto: scored by the template of its first 3 faces, whose own cosines are "
            f"{best['score']:.4f} ({best['source_path']})") in " ".join(text.stdout.split())


def test_a_claim_is_verified_against_the_claimed_identity_s_template(gallery, embedder):
    from fvmatch.analysis.matching import verify_claim
    from fvmatch.gallery.gallery import Gallery

    question = embedder.embed_face(photos("fr_barack_obama")[3], spaces=["dlib-face"])[0]
    with Gallery.open(gallery, read_only=True) as opened:
        (group,) = verify_claim(opened, question, "fr_barack_obama", ["face"], calibration=embedder.calibration)
    (candidate,), (judgement,) = group.candidates, group.judgements
    assert candidate.identity == "fr_barack_obama" and len(candidate.references) == 2
    assert judgement.space == "dlib-face template2" and judgement.log10_lr > 0


def test_a_voice_keeps_its_best_item_and_a_template_needs_two_references():
    from fvmatch.analysis.matching import by_template
    from fvmatch.analysis.templates import score_name, template_vector
    from fvmatch.gallery.gallery import Candidate

    assert by_template("face", "face", "dlib-face") and not by_template("voice", "voice", "ge2e-voice")
    assert not by_template("face", "voice", "joint") and not by_template("face", "face", "joint")
    alone = Candidate(1, "a", 0.9, "face", 1, "a.jpg", 1, "dlib-face")
    assert score_name("dlib-face", alone) == "dlib-face"
    alone.references = [{"media_id": 1}, {"media_id": 2}]
    assert score_name("dlib-face", alone) == "dlib-face template2"
    unit = template_vector(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    assert unit == pytest.approx([2 ** -0.5, 2 ** -0.5])
