"""Identity batches, the learning-rate schedule and the trainer on a tiny prepared corpus (CPU)."""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import pytest
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch
from mediagen import run_cli_here
from trainruns import stopped_after_first_epoch_then_resumed

from fvmatch.errors import BadArgument
from fvmatch.models.checkpoint import load_checkpoint, read_card
from fvmatch.synth import CorpusSpec, write_corpus
from fvmatch.training.data import IdentityBatches, PreparedCorpus
from fvmatch.training.prepare import prepare_corpus
from fvmatch.training.trainer import STATE_SUFFIX, TrainSettings, learning_rate, train, validation_note

TINY = TrainSettings(config="small", epochs=2, batch_size=4, lr_start=0.01, lr_end=1e-4, crop_seconds=1.0, seed=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    write_corpus(root / "corpus", CorpusSpec(identities=20, seed=4, faces_per_identity=2, clips_per_identity=2,
                                             clip_seconds=2.0), workers=1)
    prepare_corpus(root / "corpus", root / "cache", workers=1)
    return root / "cache"


def test_learning_rate_decays_logarithmically_from_start_to_end():
    assert learning_rate(0, 101, 1e-3, 1e-8) == pytest.approx(1e-3)
    assert learning_rate(100, 101, 1e-3, 1e-8) == pytest.approx(1e-8)
    assert learning_rate(50, 101, 1e-3, 1e-8) == pytest.approx(math.sqrt(1e-3 * 1e-8))
    rates = [learning_rate(step, 11, 1e-3, 1e-8) for step in range(11)]
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # a constant factor per step: a straight line in log(lr)


def test_identity_batches_hold_distinct_identities_with_one_face_and_one_voice(prepared):
    corpus = PreparedCorpus(prepared)
    identities = corpus.split("train")
    batches = IdentityBatches(corpus, identities, batch_size=4, crop_seconds=1.5, seed=0, epoch=0)
    assert len(batches) == len(identities) // 4
    seen = []
    for k in range(len(batches)):
        batch = batches[k]
        assert batch.faces.shape == (4, 3, 160, 160) and batch.faces.dtype == torch.uint8
        assert batch.waveforms.shape == (4, 24000) and batch.waveforms.abs().max() <= 1.0
        assert len(set(batch.labels.tolist())) == 4
        seen += batch.labels.tolist()
    assert len(seen) == len(set(seen))  # an epoch uses each identity at most once


def test_batches_are_fixed_by_seed_and_epoch_and_ranks_share_them_out(prepared):
    corpus = PreparedCorpus(prepared)
    identities = corpus.split("train")
    first = IdentityBatches(corpus, identities, 2, 1.0, seed=0, epoch=0)
    again = IdentityBatches(corpus, identities, 2, 1.0, seed=0, epoch=0)
    later = IdentityBatches(corpus, identities, 2, 1.0, seed=0, epoch=1)
    assert torch.equal(first[0].faces, again[0].faces) and torch.equal(first[0].waveforms, again[0].waveforms)
    assert [first[k].labels.tolist() for k in range(len(first))] != [later[k].labels.tolist() for k in range(len(later))]
    ranks = [IdentityBatches(corpus, identities, 2, 1.0, seed=0, epoch=0, rank=r, world=2) for r in (0, 1)]
    split = sorted(tuple(b.labels.tolist()) for r in ranks for b in (r[k] for k in range(len(r))))
    whole = sorted(tuple(first[k].labels.tolist()) for k in range(len(first)))
    assert split == whole


def test_training_writes_a_checkpoint_with_validation_metrics_each_epoch(prepared, tmp_path):
    out = tmp_path / "model.safetensors"
    epochs = []
    result = train(prepared, out, TINY, on_epoch=epochs.append)
    assert [record["epoch"] for record in epochs] == [0, 1]
    card = read_card(out)
    assert card["model_id"] == result.model_id == load_checkpoint(out).model_id
    validation = card["metrics"]["validation"]
    assert 0.0 <= validation["verification_auc"] <= 1.0 and 0.0 <= validation["vf_1to2_accuracy"] <= 1.0
    assert card["training"]["settings"] == TINY.to_dict()
    assert "20 identities" in card["training_data"]
    assert (tmp_path / ("model.safetensors" + STATE_SUFFIX)).is_file()


def test_resume_continues_exactly_where_the_run_stopped(prepared, tmp_path):
    straight = tmp_path / "straight.safetensors"
    train(prepared, straight, TINY)
    stopped = tmp_path / "stopped.safetensors"
    one_epoch = TrainSettings(**{**TINY.to_dict(), "epochs": 2})
    # stop after the first epoch: run it as a one-epoch job would, then resume for the second
    steps = []
    resumed = stopped_after_first_epoch_then_resumed(prepared, stopped, one_epoch,
                                                     on_step=lambda r: steps.append((r.step, r.learning_rate)))
    first_resumed_step = len(IdentityBatches(PreparedCorpus(prepared), PreparedCorpus(prepared).split("train"),
                                             TINY.batch_size, TINY.crop_seconds, TINY.seed, 0)) + 1
    assert steps[0] == (first_resumed_step, pytest.approx(learning_rate(first_resumed_step - 1, resumed.steps,
                                                                         TINY.lr_start, TINY.lr_end)))
    a, b = load_checkpoint(straight).model.state_dict(), load_checkpoint(stopped).model.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert read_card(straight)["model_id"] == read_card(stopped)["model_id"]


def test_resume_with_other_settings_is_refused(prepared, tmp_path):
    out = tmp_path / "m.safetensors"
    train(prepared, out, TrainSettings(**{**TINY.to_dict(), "epochs": 1}))
    with pytest.raises(ValueError, match=r"settings differ from the run being resumed \(batch_size\)"):
        train(prepared, out, TrainSettings(**{**TINY.to_dict(), "epochs": 1, "batch_size": 2}), resume=True)


def test_training_lifts_matching_accuracy_over_the_untrained_model(prepared, tmp_path):
    """At this scale the gain shows on the identities trained on; held-out figures come from the shipped checkpoint."""
    from fvmatch.models.config import get_config
    from fvmatch.models.joint import JointModel
    from fvmatch.training.validation import validate

    corpus = PreparedCorpus(prepared)
    identities = corpus.split("train")
    torch.manual_seed(0)
    before = validate(JointModel(get_config("small")), corpus, identities, torch.device("cpu"))
    settings = TrainSettings(config="small", epochs=1, passes=40, batch_size=8, lr_start=0.1, lr_end=0.01,
                             crop_seconds=1.5, seed=0)
    out = tmp_path / "learned.safetensors"
    train(prepared, out, settings)
    after = validate(load_checkpoint(out).model, corpus, identities, torch.device("cpu"))
    assert before["vf_1to2_accuracy"] < 0.65
    assert after["vf_1to2_accuracy"] > before["vf_1to2_accuracy"] + 0.2
    assert after["verification_auc"] > before["verification_auc"] + 0.2


def test_the_same_command_trains_on_two_processes_under_torchrun(prepared, tmp_path):
    """DistributedDataParallel on CPU (gloo): the CUDA path differs only in backend and device."""
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp.safetensors"
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "fvmatch.cli", "train",
                             str(prepared), "--out", str(out), "--epochs", "1", "--batch-size", "2",
                             "--crop-seconds", "1", "--lr", "0.01", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    card = read_card(out)
    assert card["training"]["world_size"] == 2
    corpus = PreparedCorpus(prepared)
    per_rank = len(IdentityBatches(corpus, corpus.split("train"), 2, 1.0, 0, 0, rank=0, world=2))
    assert card["metrics"]["step"] == per_rank


def test_a_non_finite_loss_stops_training_naming_the_step_before_anything_is_saved(prepared, tmp_path, monkeypatch):
    from fvmatch.training import trainer
    from fvmatch.training.losses import JointLoss

    computed = JointLoss.on_device
    calls = []

    def poisoned(self, *tensors):
        total, terms = computed(self, *tensors)
        calls.append(1)
        return (total * float("nan"), terms) if len(calls) == 2 else (total, terms)

    monkeypatch.setattr(JointLoss, "on_device", poisoned)
    reports = []
    out = tmp_path / "model.safetensors"
    with pytest.raises(FloatingPointError, match=r"NaN or infinite at step 2 \(epoch 0\)"):
        train(prepared, out, TINY, on_step=reports.append)
    assert [report.step for report in reports] == [1]  # the second step never reports (on CPU each is checked)
    assert not out.exists()
    calls.clear()
    answer = run_cli_here("train", prepared, "--out", out, "--epochs", "1", "--batch-size", "4", "--crop-seconds", "1")
    assert answer.returncode == 2 and not out.exists()
    assert answer.stderr.strip().splitlines()[-1] == ("fvmatch: error: train: the loss became NaN or infinite at step 2 "
                                                       "(epoch 0); lower the learning rate or check the data")
    # on CUDA the flag is read every FINITE_CHECK_STEPS steps and at the epoch's end: a late NaN is still caught
    flag = torch.tensor(True)
    with pytest.raises(FloatingPointError, match="steps 20-39 "):
        trainer._check_finite(flag, 20, 39, 0)
    trainer._check_finite(torch.tensor(False), 20, 39, 0)


def test_step_reports_keep_the_loss_on_the_device_until_read(prepared, tmp_path):
    from fvmatch.training.losses import TERM_NAMES

    reports = []
    train(prepared, tmp_path / "model.safetensors", TrainSettings(**{**TINY.to_dict(), "epochs": 1}),
          on_step=reports.append)
    report = reports[-1]
    assert isinstance(report.values, torch.Tensor) and report.values.shape == (1 + len(TERM_NAMES),)
    assert list(report.terms) == list(TERM_NAMES) and math.isfinite(report.loss) and report.loss > 0
    terms = report.terms
    weighted = (terms["identity_face"] + terms["identity_voice"] + 0.001 * (terms["center_face"] + terms["center_voice"])
                + terms["face_to_voice"] + terms["voice_to_face"] + 0.1 * (terms["face_within"] + terms["voice_within"]))
    assert report.loss == pytest.approx(weighted, rel=1e-5)


def test_telephone_band_keeps_each_voice_inside_its_own_band_and_full_band_ones_untouched():
    from fvmatch.training.augment import FULL_BAND, telephone_band

    generator = torch.Generator().manual_seed(0)
    waveforms = torch.randn(3, 16000, generator=generator) * 0.1  # white noise: energy at every frequency
    bands = torch.tensor([[600.0, 3400.0], FULL_BAND, [100.0, 4000.0]])
    narrowed = telephone_band(waveforms, bands)
    assert narrowed.shape == waveforms.shape and torch.equal(narrowed[1], waveforms[1])
    spectrum, original = torch.fft.rfft(narrowed).abs().pow(2), torch.fft.rfft(waveforms).abs().pow(2)  # 1 Hz a bin
    for row, (low, high) in ((0, (600, 3400)), (2, (100, 4000))):
        outside = spectrum[row, : max(0, low - 300)].sum() + spectrum[row, high + 300 :].sum()
        assert outside < 1e-4 * spectrum[row].sum()  # nothing left 300 Hz past either edge...
        inside = slice(low + 200, high - 200)
        assert spectrum[row, inside].sum() > 0.95 * original[row, inside].sum()  # ...and the band itself kept
    assert spectrum[1, 4100:].sum() > 0.4 * spectrum[1].sum()


def test_identity_batches_mark_the_asked_share_of_voices_for_the_telephone_band(prepared):
    corpus = PreparedCorpus(prepared)
    identities = corpus.split("train")
    plain = IdentityBatches(corpus, identities, 4, 1.0, seed=0, epoch=0)
    assert all(torch.equal(plain[k].bands, torch.tensor([[0.0, 8000.0]] * 4)) for k in range(len(plain)))
    marked = [IdentityBatches(corpus, identities, 4, 1.0, seed=0, epoch=0, passes=20, telephone_fraction=0.5)
              for _ in range(2)]
    bands = torch.cat([marked[0][k].bands for k in range(len(marked[0]))])
    assert torch.equal(bands, torch.cat([marked[1][k].bands for k in range(len(marked[1]))]))  # fixed by seed
    narrowed = bands[:, 1] < 8000
    assert 0.35 < narrowed.float().mean().item() < 0.65
    low, high = bands[narrowed].T
    assert ((50 <= low) & (low <= 300) & (3200 <= high) & (high <= 4000)).all()
    assert low.std() > 30 and high.std() > 100  # edges drawn per voice, not one fixed filter


def test_training_with_telephone_voices_records_the_share_in_the_card(prepared, tmp_path):
    settings = TrainSettings(**{**TINY.to_dict(), "epochs": 1, "telephone_fraction": 0.5})
    train(prepared, tmp_path / "model.safetensors", settings)
    assert read_card(tmp_path / "model.safetensors")["training"]["settings"]["telephone_fraction"] == 0.5


@pytest.mark.parametrize("crop_seconds,telephone", [(1.0, 0.0), (3.0, 0.5)])  # 3 s: longer than the 2 s clips
def test_batches_assembled_in_device_memory_equal_the_dataloaders(prepared, crop_seconds, telephone):
    from fvmatch.training.device_data import DeviceCorpus

    corpus = PreparedCorpus(prepared)
    batches = IdentityBatches(corpus, corpus.split("train"), 4, crop_seconds, seed=1, epoch=2, passes=3,
                              telephone_fraction=telephone)
    held = DeviceCorpus(corpus, "cpu")
    flipped = 0
    for k in range(len(batches)):
        expected, got = batches[k], held.batch(batches.plan(k), batches.crop_samples)
        assert torch.equal(got.faces, expected.faces) and torch.equal(got.waveforms, expected.waveforms)
        assert torch.equal(got.labels, expected.labels) and torch.equal(got.bands, expected.bands)
        assert got.faces.is_contiguous(memory_format=torch.channels_last)
        flipped += sum(batches.plan(k).flips)
    assert 0 < flipped  # the flip path was exercised


def test_training_from_device_memory_learns_exactly_what_the_dataloader_teaches(prepared, tmp_path):
    one_epoch = TrainSettings(**{**TINY.to_dict(), "epochs": 1})
    loaded, held = tmp_path / "loaded.safetensors", tmp_path / "held.safetensors"
    train(prepared, loaded, one_epoch, data_on_device=False)
    train(prepared, held, one_epoch, data_on_device=True)
    a, b = load_checkpoint(loaded).model.state_dict(), load_checkpoint(held).model.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device (CI has none; "
                    "benchmarks/train_throughput.py --parts graph checks them on a lent GPU)")
def test_training_as_a_cuda_graph_follows_eager_training(prepared, tmp_path):
    eager, graphed = tmp_path / "eager.safetensors", tmp_path / "graphed.safetensors"
    train(prepared, eager, TINY, device="cuda", cuda_graph=False)
    train(prepared, graphed, TINY, device="cuda", cuda_graph=True)
    from fvmatch.models.config import get_config
    from fvmatch.models.joint import JointModel

    a, b = load_checkpoint(eager).model.state_dict(), load_checkpoint(graphed).model.state_dict()
    torch.manual_seed(TINY.seed)  # the trainer's starting weights
    start = JointModel(get_config(TINY.config)).state_dict()

    def distance(x: dict, y: dict) -> float:
        return float(sum((x[k].float().cpu() - y[k].float().cpu()).norm() ** 2 for k in a
                         if a[k].is_floating_point()) ** 0.5)

    moved, apart = distance(a, start), distance(a, b)
    assert apart < 0.1 * moved  # the graph trained as eager steps do (bf16 rounding apart), not from elsewhere


def test_train_refuses_an_output_folder_that_does_not_exist_before_preparing_anything(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "meta.csv").write_text("identity,name,gender,nationality,age,split\n")
    result = run_cli_here("train", corpus, "--out", tmp_path / "ckpt" / "x.safetensors")
    assert result.returncode == 2
    assert f"fvmatch: error: {tmp_path / 'ckpt'}: no such folder: the checkpoint x.safetensors cannot be written" \
        in result.stderr
    assert sorted(path.name for path in corpus.iterdir()) == ["meta.csv"]  # nothing prepared


def test_train_refuses_an_output_under_a_file_or_a_folder_as_the_output(prepared, tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(BadArgument, match="is a file, not a folder") as raised:
        train(prepared, tmp_path / "notes.txt" / "x.safetensors", TINY)
    assert raised.value.item == str(tmp_path / "notes.txt")
    with pytest.raises(BadArgument, match="is a folder; give the checkpoint file"):
        train(prepared, tmp_path, TINY)


def test_an_empty_validation_split_is_said_in_each_epoch_record(prepared, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(prepared, cache)
    plan = json.loads((cache / "prepare.json").read_text())
    assert sum(row["split"] == "val" for row in plan["identities"]) >= 2
    for row in plan["identities"]:
        row["split"] = "train" if row["split"] == "val" else row["split"]
    (cache / "prepare.json").write_text(json.dumps(plan))
    result = train(cache, tmp_path / "model.safetensors", replace(TINY, epochs=1))
    assert result.history[0]["val_note"] == validation_note(0)
    assert "val_verification_auc" not in result.history[0]
    assert "the val split has 0 usable identities, at least 2 are needed" in validation_note(0)
    card = read_card(tmp_path / "model.safetensors")
    assert card["training"]["identities"] == sorted(row["identity"] for row in plan["identities"]
                                                    if row["split"] == "train")
