"""The training loop of the joint embedding (Wang et al. 2020), on one device or many through torchrun.

    for each epoch: for each identity batch:
        learning rate <- logarithmic decay from lr_start to lr_end over the whole run
        faces, voices -> joint model (bf16 autocast on CUDA) -> identity logits
        loss = ranking (hardest negatives, both directions) + λ1 identity CE + λ2 center loss
        backward, SGD step, center update
    validate (verification AUC, V-F 1:2 accuracy), save the checkpoint and the trainer state

On CUDA a step never waits for the GPU to read a value back (that would idle the GPU while the host queues the
next step): the loss and its terms stay on the device until a report reads them, the NaN check reads one flag
every FINITE_CHECK_STEPS steps and at the end of each epoch, and the center update avoids bincount's readback.

Multi-GPU: run the same command under `torchrun --nproc_per_node N`; each rank takes its share of every
epoch's batches and DistributedDataParallel averages the gradients. Only rank 0 validates and writes files.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from fvmatch.media.audio import log_mel_batch
from fvmatch.models.checkpoint import load_checkpoint, save_checkpoint
from fvmatch.models.config import get_config
from fvmatch.models.face import load_face_weights
from fvmatch.models.joint import IdentityClassifier, JointModel

from .augment import telephone_band
from .data import IdentityBatches, PreparedCorpus
from .losses import TERM_NAMES, CenterLoss, JointLoss
from .validation import validate

STATE_SUFFIX = ".trainer.safetensors"
FINITE_CHECK_STEPS = 20  # on CUDA the loss is checked for NaN/inf every this many steps (each check waits for the GPU)


@dataclass
class TrainSettings:
    config: str = "small"
    epochs: int = 10
    batch_size: int = 64
    lr_start: float = 1e-3
    lr_end: float = 1e-8
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_seconds: float = 3.0
    passes: int = 1  # passes over the training identities per epoch (each pass: every identity once)
    seed: int = 0
    workers: int = 0  # DataLoader worker processes assembling batches
    telephone_fraction: float = 0.0  # share of voice crops narrowed to a telephone band (training/augment.py)
    face_weights: str | None = None  # local pretrained face subnet weights (e.g. VGGFace2), never downloaded

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepReport:
    """One step, as `on_step` sees it. The loss stays on the device until `loss` or `terms` is read (on CUDA
    reading it waits for the step to finish: a progress display should read it a few times a second, not every
    step). `pairs_per_second` is host time between steps: on CUDA it is exact over many steps, not for one."""

    epoch: int
    step: int
    total_steps: int
    learning_rate: float
    values: torch.Tensor  # [total, *terms in TERM_NAMES order], detached
    pairs_per_second: float

    @property
    def loss(self) -> float:
        return float(self.values[0])

    @property
    def terms(self) -> dict[str, float]:
        return dict(zip(TERM_NAMES, self.values[1:].tolist()))


@dataclass
class TrainResult:
    checkpoint: Path
    model_id: str
    epochs_run: int
    steps: int
    history: list[dict] = field(default_factory=list)


def learning_rate(step: int, total_steps: int, start: float, end: float) -> float:
    """Logarithmic decay: start at step 0, end at the last step, a straight line in log(lr)."""
    if total_steps <= 1:
        return start
    return start * (end / start) ** (step / (total_steps - 1))


class TrainNet(nn.Module):
    """Joint model + identity head in one module, so that DistributedDataParallel wraps a single forward."""

    def __init__(self, model: JointModel, classifier: IdentityClassifier) -> None:
        super().__init__()
        self.model = model
        self.classifier = classifier

    def forward(self, faces: torch.Tensor, mel: torch.Tensor):
        face_vectors, voice_vectors = self.model(faces, mel)
        return face_vectors, voice_vectors, self.classifier(face_vectors), self.classifier(voice_vectors)


def _check_finite(nonfinite: torch.Tensor, first: int, last: int, epoch: int) -> None:
    """FloatingPointError if any loss of steps first..last (counted from 1, as `on_step` counts them) was NaN or
    infinite; reads the flag back, a sync."""
    if bool(nonfinite):
        steps = f"step {first}" if first >= last else f"steps {first}-{last}"
        raise FloatingPointError(f"the loss became NaN or infinite at {steps} (epoch {epoch}); lower the learning "
                                 "rate or check the data")


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) under torchrun, else (0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _gathered(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor of every rank, concatenated in rank order."""
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def _save_state(path: Path, net: TrainNet, centers: CenterLoss, optimizer: torch.optim.Optimizer, info: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"classifier.{k}": v.detach().cpu().contiguous() for k, v in net.classifier.state_dict().items()}
    tensors["centers"] = centers.centers.detach().cpu().contiguous()
    for index, parameter in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        buffer = optimizer.state.get(parameter, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum.{index}"] = buffer.detach().cpu().contiguous()
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, temporary, metadata={"fvmatch_trainer_state": json.dumps(info)})
    temporary.replace(path)


def _load_state(path: Path, net: TrainNet, centers: CenterLoss, optimizer: torch.optim.Optimizer) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as handle:
        info = json.loads((handle.metadata() or {})["fvmatch_trainer_state"])
    tensors = load_file(path)
    device = centers.centers.device
    net.classifier.load_state_dict({k.removeprefix("classifier."): v for k, v in tensors.items()
                                    if k.startswith("classifier.")})
    centers.centers.copy_(tensors["centers"])
    for index, parameter in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        if f"momentum.{index}" in tensors:
            optimizer.state[parameter]["momentum_buffer"] = tensors[f"momentum.{index}"].to(device)
    return info


def train(cache: str | Path, out: str | Path, settings: TrainSettings, device: str = "cpu", resume: bool = False,
          training_data: str | None = None, on_step: Callable[[StepReport], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train on prepared shards, writing `out` (checkpoint) and `out`.trainer.safetensors (state) every epoch.

    With `resume`, continue from the last saved epoch: same step, same learning rate, same batches.
    """
    out = Path(out)
    state_path = out.with_name(out.name + STATE_SUFFIX)
    rank, world, local_rank = _distributed()
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    torch_device = torch.device(device)
    cuda = torch_device.type == "cuda"

    corpus = PreparedCorpus(cache)
    train_ids, val_ids = corpus.split("train"), corpus.split("val")
    if len(train_ids) < 2:
        raise ValueError(f"{cache}: the train split has {len(train_ids)} usable identities; at least 2 are needed")
    config = get_config(settings.config)
    torch.manual_seed(settings.seed)
    model = JointModel(config)
    face_weights_sha256 = None
    if settings.face_weights and not resume:
        face_weights_sha256 = load_face_weights(model.face, settings.face_weights)
    net = TrainNet(model, IdentityClassifier(config.embedding_dim, len(train_ids))).to(torch_device)
    centers = CenterLoss(len(train_ids), config.embedding_dim).to(torch_device)
    if cuda:
        net.model.face.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr_start, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    objective = JointLoss()

    start_epoch, step, history = 0, 0, []
    if resume:
        checkpoint = load_checkpoint(out, device=str(torch_device))
        net.model.load_state_dict(checkpoint.model.state_dict())
        info = _load_state(state_path, net, centers, optimizer)
        if info["model_id"] != checkpoint.model_id:
            raise ValueError(f"{state_path}: trainer state belongs to another checkpoint than {out}")
        if info["settings"] != settings.to_dict():
            changed = sorted(k for k in settings.to_dict() if info["settings"].get(k) != settings.to_dict()[k])
            raise ValueError(f"{state_path}: settings differ from the run being resumed ({', '.join(changed)})")
        start_epoch, step, history = info["epoch"] + 1, info["step"], info["history"]
        face_weights_sha256 = info.get("face_weights_sha256")

    model_for_step: nn.Module = net
    if world > 1:
        model_for_step = nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if cuda else None)

    steps_per_epoch = len(IdentityBatches(corpus, train_ids, settings.batch_size, settings.crop_seconds,
                                          settings.seed, 0, rank, world, passes=settings.passes))
    total_steps = steps_per_epoch * settings.epochs
    description = training_data or corpus.description()
    checkpoint_card = {}
    for epoch in range(start_epoch, settings.epochs):
        batches = IdentityBatches(corpus, train_ids, settings.batch_size, settings.crop_seconds, settings.seed, epoch,
                                  rank, world, passes=settings.passes, telephone_fraction=settings.telephone_fraction)
        loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=settings.workers,
                                             pin_memory=cuda, persistent_workers=False,
                                             prefetch_factor=4 if settings.workers else None)
        net.train()
        nonfinite = torch.zeros((), dtype=torch.bool, device=torch_device)  # any non-finite loss since the last check
        checked = step
        started = time.perf_counter()
        for batch in loader:
            lr = learning_rate(step, total_steps, settings.lr_start, settings.lr_end)
            for group in optimizer.param_groups:
                group["lr"] = lr
            faces = batch.faces.to(torch_device, non_blocking=True)
            if cuda:
                faces = faces.contiguous(memory_format=torch.channels_last)
            labels = batch.labels.to(torch_device, non_blocking=True)
            waveforms = batch.waveforms.to(torch_device, non_blocking=True)
            if settings.telephone_fraction:
                waveforms = telephone_band(waveforms, batch.bands.to(torch_device, non_blocking=True))
            mel = log_mel_batch(waveforms)
            with torch.autocast(torch_device.type, dtype=torch.bfloat16, enabled=cuda):
                face_vectors, voice_vectors, face_logits, voice_logits = model_for_step(faces, mel)
            loss, terms = objective.on_device(face_vectors.float(), voice_vectors.float(), face_logits.float(),
                                              voice_logits.float(), labels, centers)
            nonfinite |= ~torch.isfinite(loss.detach())
            if not cuda or step + 1 - checked >= FINITE_CHECK_STEPS:  # (on CPU checking costs nothing)
                _check_finite(nonfinite, checked + 1, step + 1, epoch)
                checked = step + 1
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            both = torch.cat([face_vectors.detach().float(), voice_vectors.detach().float()])
            both_labels = labels.repeat(2)
            if world > 1:  # every rank applies every rank's batch, so that the centers stay identical
                both, both_labels = _gathered(both), _gathered(both_labels)
            centers.update_centers(both, both_labels)
            step += 1
            now = time.perf_counter()
            if on_step and rank == 0:
                on_step(StepReport(epoch, step, total_steps, lr, torch.cat([loss.detach()[None], terms]),
                                   len(labels) * world / (now - started)))
            started = now
        _check_finite(nonfinite, checked + 1, step, epoch)  # before anything is validated or saved
        if rank == 0:
            metrics = validate(net.model, corpus, val_ids, torch_device) if len(val_ids) >= 2 else {}
            record = {"epoch": epoch, "step": step, "learning_rate": learning_rate(step - 1, total_steps,
                      settings.lr_start, settings.lr_end), **{f"val_{k}": v for k, v in metrics.items()}}
            history.append(record)
            checkpoint_card = save_checkpoint(
                net.model, out, training_data=description,
                metrics={"validation": metrics, "epoch": epoch, "step": step},
                training={"settings": settings.to_dict(), "history": history, "world_size": world,
                          "face_weights_sha256": face_weights_sha256})
            _save_state(state_path, net, centers, optimizer,
                        {"epoch": epoch, "step": step, "settings": settings.to_dict(), "history": history,
                         "model_id": checkpoint_card["model_id"], "face_weights_sha256": face_weights_sha256})
            if on_epoch:
                on_epoch(record)
        if world > 1:
            torch.distributed.barrier()
    return TrainResult(out, checkpoint_card.get("model_id", ""), settings.epochs - start_epoch, step, history)
