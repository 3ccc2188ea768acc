"""The training loop of the joint embedding, on one device or many through torchrun; the recipe
(training/recipes/, Wang et al. 2020 by default) says what the model reads and which loss it learns.

    for each epoch: for each identity batch:
        learning rate <- logarithmic decay from lr_start to lr_end over the whole run
        the recipe's face and voice inputs -> joint model (bf16 autocast on CUDA) -> identity logits
        loss = ranking (hardest negatives, both directions) + λ1 identity CE + λ2 center loss
        backward, SGD step, center update
    validate (verification AUC, V-F 1:2 accuracy), save the checkpoint and the trainer state

On one CUDA device the corpus is held in GPU memory and each batch assembled there (training/device_data.py),
and the step (training/step.py) is captured once as a CUDA graph and replayed (training/cuda_graph.py): together
2.2x the plain fp32 loop's pairs/s at batch 256 on an H200 (README, "Training at GPU speed").

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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fvmatch.models.checkpoint import load_checkpoint, read_card, save_checkpoint
from fvmatch.models.config import get_config
from fvmatch.models.face import load_face_weights
from fvmatch.models.joint import IdentityClassifier, build_model

from .cuda_graph import GraphedStep
from .data import PreparedCorpus
from .device_data import device_corpus_for
from .losses import TERM_NAMES, CenterLoss, JointLoss
from .output_path import check_output_path
from .recipes import get_recipe, recipe_card
from .step import make_step
from .train_net import TrainNet, TrainSettings

STATE_SUFFIX = ".trainer.safetensors"
FINITE_CHECK_STEPS = 20  # on CUDA the loss is checked for NaN/inf every this many steps (each check waits for the GPU)


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


def validation_note(val_identities: int) -> str:
    """Why an epoch has no validation figures."""
    return (f"not measured: the val split has {val_identities} usable identit{'y' if val_identities == 1 else 'ies'}, "
            "at least 2 are needed (import with --val-fraction, or give meta.csv val rows)")


def learning_rate(step: int, total_steps: int, start: float, end: float) -> float:
    """Logarithmic decay: start at step 0, end at the last step, a straight line in log(lr)."""
    if total_steps <= 1:
        return start
    return start * (end / start) ** (step / (total_steps - 1))


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


def _check_same_recipe(out: Path, recipe: str) -> None:
    """ValueError when the checkpoint being resumed was trained with another recipe (before anything is loaded)."""
    trained_with = read_card(out).get("training", {}).get("settings", {}).get("recipe", "wang2020")
    if trained_with != recipe:
        raise ValueError(f"{out}: was trained with recipe {trained_with!r}, not {recipe!r}; resume it with "
                         f"--recipe {trained_with} or write a new checkpoint")


def train(cache: str | Path, out: str | Path, settings: TrainSettings, device: str = "cpu", resume: bool = False,
          training_data: str | None = None, on_step: Callable[[StepReport], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None, data_on_device: bool | None = None,
          cuda_graph: bool | None = None) -> TrainResult:
    """Train on prepared shards, writing `out` (checkpoint) and `out`.trainer.safetensors (state) every epoch.

    With `resume`, continue from the last saved epoch: same step, same learning rate, same batches.
    `data_on_device`: hold the corpus in the device's memory and assemble batches there (training/device_data.py;
    the same batches as through the DataLoader). None: on CUDA, when the recipe trains on media and the corpus
    fits; False: always the DataLoader. `cuda_graph`: capture the step as a CUDA graph (training/cuda_graph.py);
    None: on one CUDA device with the seed's objective; False: eager steps.
    """
    out = check_output_path(out)
    state_path = out.with_name(out.name + STATE_SUFFIX)
    rank, world, local_rank = _distributed()
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
    torch_device = torch.device(device)
    cuda = torch_device.type == "cuda"

    recipe = get_recipe(settings.recipe)
    config = get_config(settings.config)
    recipe.check_config(config)
    if resume:
        _check_same_recipe(out, settings.recipe)
    corpus = PreparedCorpus(cache)
    data = recipe.data(corpus, config)
    train_ids, val_ids = recipe.usable(data, corpus.split("train")), recipe.usable(data, corpus.split("val"))
    if len(train_ids) < 2:
        raise ValueError(f"{cache}: the train split has {len(train_ids)} usable identities; at least 2 are needed")
    torch.manual_seed(settings.seed)
    model = build_model(config)
    face_weights_sha256 = None
    if settings.face_weights and config.experts:
        raise ValueError(f"config {config.name!r} keeps its pretrained face space frozen: it takes no --face-weights")
    if settings.face_weights and not resume:
        face_weights_sha256 = load_face_weights(model.face, settings.face_weights)
    net = TrainNet(model, IdentityClassifier(config.embedding_dim, len(train_ids))).to(torch_device)
    centers = CenterLoss(len(train_ids), config.embedding_dim).to(torch_device)
    if cuda:
        net.model.face.to(memory_format=torch.channels_last)
    # fused: one kernel updates every parameter (on CUDA), instead of a few per parameter group
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr_start, momentum=settings.momentum,
                                weight_decay=settings.weight_decay, fused=cuda or None)
    objective = recipe.objective()
    if hasattr(objective, "bind"):  # an objective that also scores pairs with a part of the model (fuse-after-align)
        objective = objective.bind(net.model)

    start_epoch, step, history = 0, 0, []
    if resume:
        checkpoint = load_checkpoint(out, device=str(torch_device))
        net.model.load_state_dict(checkpoint.model.state_dict())
        info = _load_state(state_path, net, centers, optimizer)
        if info["model_id"] != checkpoint.model_id:
            raise ValueError(f"{state_path}: trainer state belongs to another checkpoint than {out}")
        trained = {"recipe": "wang2020", **info["settings"]}  # (states written before recipes existed)
        if trained != settings.to_dict():
            changed = sorted(k for k in settings.to_dict() if trained.get(k) != settings.to_dict()[k])
            raise ValueError(f"{state_path}: settings differ from the run being resumed ({', '.join(changed)})")
        start_epoch, step, history = info["epoch"] + 1, info["step"], info["history"]
        face_weights_sha256 = info.get("face_weights_sha256")

    model_for_step: nn.Module = net
    # one CUDA graph per run (training/cuda_graph.py): one process, the seed's objective (whose terms never wait
    # for the host); other recipes' objectives are not checked for capture and run eagerly
    use_graph = cuda and world == 1 and type(objective) is JointLoss and cuda_graph is not False
    if world > 1:
        model_for_step = nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if cuda else None)

    first_batches = recipe.batches(data, train_ids, settings, 0, rank, world)
    steps_per_epoch = len(first_batches)
    # every rank applies every rank's batch to the centers, so that they stay identical
    run_step = make_step(model_for_step, objective, centers, optimizer, torch_device,
                         gather=_gathered if world > 1 else None, autocast_cache=not use_graph)
    graphed = GraphedStep(run_step, optimizer, torch_device) if use_graph else None
    device_corpus = None
    if data_on_device or (data_on_device is None and cuda):
        device_corpus = device_corpus_for(first_batches, data, torch_device)
    total_steps = steps_per_epoch * settings.epochs
    description = training_data or corpus.description()
    # the people the model has seen: evaluate warns when asked to measure it on them
    trained_labels = sorted(corpus.identities[index]["identity"] for index in train_ids)
    checkpoint_card = {}
    experts = data.description["model_ids"] if config.experts else None  # the frozen spaces the model reads
    for epoch in range(start_epoch, settings.epochs):
        batches = recipe.batches(data, train_ids, settings, epoch, rank, world)
        if device_corpus is not None:
            loader = (device_corpus.batch(batches.plan(k), batches.crop_samples) for k in range(len(batches)))
        else:
            loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False,
                                                 num_workers=settings.workers, pin_memory=cuda,
                                                 persistent_workers=False,
                                                 prefetch_factor=4 if settings.workers else None)
        net.train()
        nonfinite = torch.zeros((), dtype=torch.bool, device=torch_device)  # any non-finite loss since the last check
        checked = step
        started = time.perf_counter()
        for batch in loader:
            lr = learning_rate(step, total_steps, settings.lr_start, settings.lr_end)
            face_inputs, voice_inputs = recipe.inputs(batch, torch_device, settings)
            labels = batch.labels.to(torch_device, non_blocking=True)
            if graphed is not None:
                graphed.set_learning_rate(lr)
                loss, terms = graphed(face_inputs, voice_inputs, labels)
            else:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                loss, terms = run_step(face_inputs, voice_inputs, labels)
            nonfinite |= ~torch.isfinite(loss)
            if not cuda or step + 1 - checked >= FINITE_CHECK_STEPS:  # (on CPU checking costs nothing)
                _check_finite(nonfinite, checked + 1, step + 1, epoch)
                checked = step + 1
            step += 1
            now = time.perf_counter()
            if on_step and rank == 0:
                on_step(StepReport(epoch, step, total_steps, lr, torch.cat([loss[None], terms]),
                                   len(labels) * world / (now - started)))
            started = now
        _check_finite(nonfinite, checked + 1, step, epoch)  # before anything is validated or saved
        if rank == 0:
            metrics = recipe.validate(net.model, data, val_ids, torch_device) if len(val_ids) >= 2 else {}
            record = {"epoch": epoch, "step": step, "learning_rate": learning_rate(step - 1, total_steps,
                      settings.lr_start, settings.lr_end), **{f"val_{k}": v for k, v in metrics.items()}}
            if not metrics:
                record["val_note"] = validation_note(len(val_ids))
            history.append(record)
            checkpoint_card = save_checkpoint(
                net.model, out, training_data=description,
                metrics={"validation": metrics, "epoch": epoch, "step": step},
                training={"settings": settings.to_dict(), "recipe": recipe_card(recipe), "history": history,
                          "world_size": world, "face_weights_sha256": face_weights_sha256,
                          "identities": trained_labels},
                **({"experts": experts} if experts else {}))
            _save_state(state_path, net, centers, optimizer,
                        {"epoch": epoch, "step": step, "settings": settings.to_dict(), "history": history,
                         "model_id": checkpoint_card["model_id"], "face_weights_sha256": face_weights_sha256})
            if on_epoch:
                on_epoch(record)
        if world > 1:
            torch.distributed.barrier()
    if rank == 0 and checkpoint_card:  # the graphs an install without torch runs it from (fvmatch.spaces.joint_onnx)
        from fvmatch.models.onnx_export import export_onnx

        export_onnx(load_checkpoint(out), out)
    return TrainResult(out, checkpoint_card.get("model_id", ""), settings.epochs - start_epoch, step, history)
