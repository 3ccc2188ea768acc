"""One training step of the joint model, the same for the trainer, its CUDA graph and the throughput benchmark."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .losses import CenterLoss


def make_step(model_for_step: nn.Module, objective, centers: CenterLoss, optimizer: torch.optim.Optimizer,
              device: torch.device, gather: Callable[[Tensor], Tensor] | None = None,
              autocast_cache: bool = True) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """step(face inputs, voice inputs, labels) -> (loss, its terms), both detached and left on the device.

    The step: forward (bf16 autocast on CUDA), the objective, backward, the optimizer's step, the center update.
    The gradients must be cleared before it (`optimizer.zero_grad(set_to_none=True)`). `gather` collects a tensor
    of every rank (several processes), so that each applies every rank's center update. `autocast_cache=False`
    where the step is captured as a CUDA graph (autocast's cache of cast weights must not outlive a capture).
    """
    cuda = device.type == "cuda"

    def step(face_inputs: Tensor, voice_inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda, cache_enabled=autocast_cache):
            face_vectors, voice_vectors, face_logits, voice_logits = model_for_step(face_inputs, voice_inputs)
        loss, terms = objective.on_device(face_vectors.float(), voice_vectors.float(), face_logits.float(),
                                          voice_logits.float(), labels, centers)
        loss.backward()
        optimizer.step()
        both = torch.cat([face_vectors.detach().float(), voice_vectors.detach().float()])
        both_labels = labels.repeat(2)
        if gather is not None:
            both, both_labels = gather(both), gather(both_labels)
        centers.update_centers(both, both_labels)
        return loss.detach(), terms

    return step
