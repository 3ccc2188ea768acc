"""Published trial lists, in their authors' formats, read and evaluated on an imported miniature VoxCeleb1."""
from __future__ import annotations

import json
import re

import pytest
from mediagen import run_cli_here
from voxceleb_tree import build_release

from fvmatch.errors import BadArgument
from fvmatch.evaluation.trials import Trial, TrialList, read_trials, write_trials
pytest.importorskip("torch",
                    reason="these lists are evaluated in the joint space (--space joint): needs torch (fvmatch[train])")

NAMES = {"Eartha_Kitt": "id10270", "Ed_Westwick": "id10271", "Eddie_Griffin": "id10272", "A.J._Buckley": "id10001"}

# Learnable PINs (Nagrani et al. 2018) veriflist: header, then id, voice speaker, face speaker, label, voice, face
PINS = """id,voice-speaker-id,face-speaker-id,label,voice-path,face-path
1,4,4,1,Ed_Westwick/Yt04vid_0Q-_0000001.wav,Ed_Westwick/Yt04vid_1Q-/0000750.jpg
2,4,6,0,Ed_Westwick/Yt04vid_1Q-_0000002.wav,Eddie_Griffin/Yt05vid_0Q-/0000375.jpg
3,6,6,1,Eddie_Griffin/Yt05vid_1Q-_0000002.wav,Eddie_Griffin/Yt05vid_0Q-/0000375.jpg
4,6,3,0,Eddie_Griffin/Yt05vid_0Q-_0000001.wav,Eartha_Kitt/Yt03vid_0Q-/0000375.jpg
5,3,3,1,Eartha_Kitt/Yt03vid_1Q-_0000002.wav,Eartha_Kitt/Yt03vid_0Q-/0000375.jpg
6,7,7,1,Eddie_Izzard/Yt06vid_0Q-_0000001.wav,Eddie_Izzard/Yt06vid_0Q-/0000375.jpg
"""
# matching lists: space-separated probe, right candidate, wrong candidate(s); voices by ID, faces by name under 1.6/
MATCHING_V2F = """id10270/Yt03vid_0Q-/00001.wav Eartha_Kitt/1.6/Yt03vid_1Q-/0000750.jpg Ed_Westwick/1.6/Yt04vid_0Q-/0000375.jpg
id10271/Yt04vid_1Q-/00002.wav Ed_Westwick/1.6/Yt04vid_0Q-/0000375.jpg Eddie_Griffin/1.6/Yt05vid_1Q-/0000750.jpg
id10272/Yt05vid_0Q-/00001.wav Eddie_Griffin/1.6/Yt05vid_1Q-/0000750.jpg Eartha_Kitt/1.6/Yt03vid_0Q-/0000375.jpg
"""
MATCHING_F2V_3 = """Eartha_Kitt/1.6/Yt03vid_0Q-/0000375.jpg id10270/Yt03vid_1Q-/00002.wav id10271/Yt04vid_0Q-/00001.wav id10272/Yt05vid_0Q-/00001.wav
"""
# VoxCeleb1's speaker-verification list: label, two clips
VERI_TEST = """1 id10270/Yt03vid_0Q-/00001.wav id10270/Yt03vid_1Q-/00002.wav
0 id10270/Yt03vid_0Q-/00001.wav id10271/Yt04vid_1Q-/00002.wav
1 id10272/Yt05vid_0Q-/00001.wav id10272/Yt05vid_1Q-/00002.wav
0 id10271/Yt04vid_0Q-/00001.wav id10272/Yt05vid_1Q-/00002.wav
"""


def write(folder, name: str, text: str):
    path = folder / name
    path.write_text(text)
    return path


def test_a_learnable_pins_veriflist_reads_as_face_voice_verification_of_its_criterion(tmp_path):
    read = read_trials(write(tmp_path, "veriflist_test_G_unseenunheard.txt", PINS), names=NAMES)
    assert read.list_format == "Nagrani et al. 2018 (Learnable PINs) verification list"
    assert read.trials[:2] == [
        Trial("verification", "F-V", "G", "faces/id10271/Yt04vid_1Q-/0000750.jpg",
              ("voices/id10271/Yt04vid_0Q-/00001.wav",), 1),
        Trial("verification", "F-V", "G", "faces/id10272/Yt05vid_0Q-/0000375.jpg",
              ("voices/id10271/Yt04vid_1Q-/00002.wav",), 0)]
    # a name the corpus does not know keeps its folder name (and is then absent from the corpus)
    assert read.trials[5].probe == "faces/Eddie_Izzard/Yt06vid_0Q-/0000375.jpg"
    random = read_trials(write(tmp_path, "veriflist_test_random_seenheard.txt", PINS), names=NAMES)
    assert {trial.stratum for trial in random.trials} == {"U"}


def test_matching_lists_read_as_1to2_or_1toN_with_the_right_candidate_first(tmp_path):
    v2f = read_trials(write(tmp_path, "matching_v2f_GN.csv", MATCHING_V2F), names=NAMES)
    assert v2f.list_format == "matching list (probe, right candidate, wrong candidates)"
    assert v2f.trials[0] == Trial("1:2", "V-F", "GN", "voices/id10270/Yt03vid_0Q-/00001.wav",
                                  ("faces/id10270/Yt03vid_1Q-/0000750.jpg", "faces/id10271/Yt04vid_0Q-/0000375.jpg"), 0)
    f2v = read_trials(write(tmp_path, "matching_f2v_U.csv", MATCHING_F2V_3), names=NAMES)
    assert f2v.trials == [Trial("1:N", "F-V", "U", "faces/id10270/Yt03vid_0Q-/0000375.jpg",
                                ("voices/id10270/Yt03vid_1Q-/00002.wav", "voices/id10271/Yt04vid_0Q-/00001.wav",
                                 "voices/id10272/Yt05vid_0Q-/00001.wav"), 0)]


def test_voxceleb1_speaker_verification_lists_read_as_voice_voice_pairs(tmp_path):
    read = read_trials(write(tmp_path, "veri_test2.txt", VERI_TEST))
    assert [(t.protocol, t.direction, t.stratum, t.target) for t in read.trials] == [
        ("verification", "V-V", "U", 1), ("verification", "V-V", "U", 0), ("verification", "V-V", "U", 1),
        ("verification", "V-V", "U", 0)]
    assert read.trials[1].candidates == ("voices/id10271/Yt04vid_1Q-/00002.wav",)


@pytest.mark.parametrize("name, text, problem", [
    ("veriflist_test_N_seenheard.txt", PINS.replace(",0,Ed_Westwick/Yt04vid_1Q-_0000002.wav", ",2,Ed_Westwick/x.wav"),
     "line 3: label '2' is neither 0 nor 1"),
    ("veriflist_test_N_seenheard.txt", PINS.replace("Eartha_Kitt/Yt03vid_1Q-_0000002.wav", "Eartha_Kitt.wav"),
     "line 6: voice 'Eartha_Kitt.wav' is neither"),
    ("my_list.txt", PINS, "its name does not say the demographic criterion"),
    ("matching_v2f_G.csv", MATCHING_V2F + "id10270/Yt03vid_0Q-/00001.wav id10271/Yt04vid_1Q-/00002.wav x.jpg\n",
     "line 4: expected a probe (.wav or .jpg) and candidates of the other modality"),
    ("matching_f2v_G.csv", MATCHING_F2V_3, "line 1: 1:N trials are unconstrained (U), but the file name says G"),
    ("list.txt", "hello world\n", "line 1: not a trial list fvmatch reads"),
    ("trials.csv", "protocol,direction,stratum\n", "line 1: not a trial list fvmatch reads"),
])
def test_an_unreadable_list_is_refused_naming_the_file_and_line(tmp_path, name, text, problem):
    path = write(tmp_path, name, text)
    with pytest.raises(BadArgument, match=re.escape(problem)) as caught:
        read_trials(path, names=NAMES)
    assert caught.value.item == str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    data = root / "corpus"
    result = run_cli_here("import", "voxceleb1", build_release(root, nested=False), data)  # the lists' frame paths
    assert result.returncode == 0, result.stderr
    return data, root / "cache"


def evaluate(corpus, trials, *options):
    data, cache = corpus
    return run_cli_here("evaluate", data, "--trials", trials, "--space", "joint", "--cache", cache, "--json", *options)


def same_as_fvmatch_list(corpus, tmp_path, trials: list[Trial]) -> dict:
    """The figures of the same trials written in fvmatch's own format: what a published list must give."""
    write_trials(TrialList(trials), tmp_path / "equivalent.csv")
    result = evaluate(corpus, tmp_path / "equivalent.csv")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_pins_veriflist_evaluates_on_the_imported_corpus_skipping_files_it_lacks(corpus, tmp_path):
    path = write(tmp_path, "veriflist_test_G_unseenunheard.txt", PINS)
    result = evaluate(corpus, path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trials"]["counts"] == {"verification F-V G": 5} and report["trials"]["skipped"] == 1
    assert report["trials"]["skipped_reasons"] == {"an item is not in DATA": 1}  # every skipped trial explained
    assert report["trials"]["shortfalls"] == [
        f"1 of 6 trials name files absent from {corpus[0]} (2 files, first "
        "faces/Eddie_Izzard/Yt06vid_0Q-/0000375.jpg): skipped"]
    assert "6 trials, read as a Nagrani et al. 2018 (Learnable PINs) verification list" in result.stderr
    figures = report["verification"]["face-voice"]["G"]
    assert (figures["trials"], figures["same"], figures["different"]) == (5, 3, 2)
    expected = same_as_fvmatch_list(corpus, tmp_path, read_trials(path, names=NAMES).trials[:5])
    assert figures == expected["verification"]["face-voice"]["G"]


def test_a_matching_list_evaluates_as_1to2_on_the_imported_corpus(corpus, tmp_path):
    path = write(tmp_path, "matching_v2f_U.csv", MATCHING_V2F)
    result = evaluate(corpus, path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trials"]["counts"] == {"1:2 V-F U": 3} and report["trials"]["skipped"] == 0
    accuracy = report["matching_1to2"]["V-F"]["U"]
    assert accuracy["trials"] == 3 and accuracy["chance"] == 0.5
    expected = same_as_fvmatch_list(corpus, tmp_path, read_trials(path, names=NAMES).trials)
    assert accuracy == expected["matching_1to2"]["V-F"]["U"]


def test_a_voxceleb1_verification_list_evaluates_voice_voice_pairs(corpus, tmp_path):
    result = evaluate(corpus, write(tmp_path, "veri_test2.txt", VERI_TEST))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trials"]["counts"] == {"verification V-V U": 4}
    assert report["verification"]["voice-voice"]["U"]["same"] == 2


def test_trials_of_people_in_another_split_are_said_and_skipped(corpus, tmp_path):
    text = MATCHING_V2F + "id10001/Yt00vid_0Q-/00001.wav A.J._Buckley/1.6/Yt00vid_1Q-/0000750.jpg " \
                          "Eartha_Kitt/1.6/Yt03vid_0Q-/0000375.jpg\n"
    result = evaluate(corpus, write(tmp_path, "matching_v2f_U.csv", text))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trials"]["skipped"] == 1 and report["trials"]["counts"] == {"1:2 V-F U": 3}
    assert report["trials"]["skipped_reasons"] == {"an item's person is outside the split evaluated": 1}
    assert "1 of 4 trials name people outside split 'test': skipped (--split evaluates another)" in \
        report["trials"]["shortfalls"]


def test_a_list_naming_nothing_in_the_corpus_is_refused_before_embedding(corpus, tmp_path):
    text = "id10999/abcdefghijk/00001.wav Nobody/1.6/abcdefghijk/0000375.jpg Noone/1.6/abcdefghijk/0000375.jpg\n"
    result = evaluate(corpus, write(tmp_path, "matching_v2f_U.csv", text))
    assert result.returncode == 2
    assert "matching_v2f_U.csv: none of its 1 trials names files in" in result.stderr
    assert "embed" not in result.stderr.replace("fvmatch: error:", "")


def test_face_frames_under_an_utterance_folder_read_as_the_corpus_paths(tmp_path):
    text = "id10270/Yt03vid_0Q-/00001.wav Eartha_Kitt/1.6/Yt03vid_1Q-/2/0000750.jpg Ed_Westwick/1.6/Yt04vid_0Q-/1/0000375.jpg\n"
    trials = read_trials(write(tmp_path, "matching_v2f_U.csv", text), names=NAMES)
    assert trials.trials[0].candidates == ("faces/id10270/Yt03vid_1Q-/2/0000750.jpg",
                                           "faces/id10271/Yt04vid_0Q-/1/0000375.jpg")


def test_split_all_is_refused_before_the_trial_list_is_read(corpus, tmp_path):
    result = evaluate(corpus, tmp_path / "no-such-list.txt", "--split", "all")
    assert result.returncode == 2
    assert "fvmatch: error: --split: 'all' is not a split; one of train, val, test" in result.stderr
    assert "no-such-list.txt" not in result.stderr
    empty = evaluate(corpus, tmp_path / "no-such-list.txt", "--split", "val")
    assert empty.returncode == 2
    assert "meta.csv: lists no identity in split 'val' (3 train, 0 val, 3 test)" in empty.stderr
