"""A training step captured once as a CUDA graph and replayed for every batch.

Measured on one H200 (benchmarks/train_throughput.py): the wang2020 step at batch 256 ran at 3,666 pairs/s eagerly
and 7,120 pairs/s at batch 512, nearly twice as fast per pair: the GPU waited on the host, which launches thousands
of kernels per step (Inception-ResNet-v1's many small layers, forward and backward). Replaying a graph launches
them all at once: 8,492 pairs/s at 256. What a graph needs, and how it is met here:
- fixed input addresses and shapes: each batch is copied into the buffers the graph reads (every batch of a run
  has the same size: IdentityBatches drops the tails);
- no host synchronisation inside the step: the loss and its terms stay on the device (training/losses.py);
- the learning rate, which changes every step, is a device tensor that the captured SGD step reads;
- gradients: cleared to None before the capture, so that the captured backward writes them rather than adding;
- warm-up: the first steps run eagerly on a side stream (the optimizer's momentum buffers, cuBLAS and cuDNN
  handles and their workspaces come to exist there), as PyTorch's documentation prescribes.
The captured kernels are the eager step's own, so the numbers are those of eager training up to the
non-determinism of the GPU's atomics (checked side by side by benchmarks/train_throughput.py --parts graph).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

WARMUP_STEPS = 3  # eager steps before the capture (PyTorch's example uses 3; DistributedDataParallel would need 11)


class GraphedStep:
    """`step(*inputs) -> outputs` run eagerly for WARMUP_STEPS calls, then captured and replayed.

    The outputs of a replay live in the graph's own memory and are overwritten by the next replay: copy what must
    outlive it (the trainer's step report concatenates, which copies).
    """

    def __init__(self, step: Callable[..., tuple[Tensor, ...]], optimizer: torch.optim.Optimizer,
                 device: torch.device) -> None:
        self.step, self.optimizer, self.device = step, optimizer, device
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[Tensor, ...] = ()
        self.outputs: tuple[Tensor, ...] = ()
        self.side = torch.cuda.Stream(device)
        # the captured SGD step reads the rate from here; set_learning_rate writes it in place
        self.learning_rate = torch.zeros((), device=device)
        for group in optimizer.param_groups:
            group["lr"] = self.learning_rate

    def set_learning_rate(self, value: float) -> None:
        self.learning_rate.fill_(value)

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        self.calls += 1
        if self.calls <= WARMUP_STEPS:
            self.side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side):
                self.optimizer.zero_grad(set_to_none=True)
                outputs = self.step(*inputs)
            torch.cuda.current_stream(self.device).wait_stream(self.side)
            return outputs
        if self.graph is None:
            self.inputs = tuple(torch.empty_like(tensor) for tensor in inputs)
            for buffer, tensor in zip(self.inputs, inputs):
                buffer.copy_(tensor)
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize(self.device)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self.step(*self.inputs)
        else:
            for buffer, tensor in zip(self.inputs, inputs):
                buffer.copy_(tensor, non_blocking=True)
        self.graph.replay()
        return self.outputs
