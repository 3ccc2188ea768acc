"""One LSTM layer in numpy, float32, with torch's weights and gate order: the recurrent part of silero-vad
(fvmatch.media.silero_net) and of the GE2E speaker encoder (fvmatch.spaces.ge2e_voice), run without torch.

The input's share of every gate is one matrix product over all time steps; each step then adds the previous hidden
state's share and takes one tanh over the four gates at once: sigmoid(x) = (1 + tanh(x / 2)) / 2, and the halving is
folded into the weights of the input, forget and output gates (a power of two: exact in floating point). The steps'
small matrix products run on one BLAS thread: on 2 busy cores, OpenBLAS's threads waiting on each other made a 20 s
clip's GE2E vector take 6-7 s instead of 0.5-0.7 s (as MTCNN's, fvmatch.media.mtcnn).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class LstmWeights:
    """One layer's weights in torch's layout (`nn.LSTM`'s `weight_ih_l0`..., `nn.LSTMCell`'s `weight_ih`...): rows of
    the input, forget, cell and output gates, in that order."""

    weight_ih: np.ndarray  # (4 hidden, inputs)
    weight_hh: np.ndarray  # (4 hidden, hidden)
    bias_ih: np.ndarray  # (4 hidden,)
    bias_hh: np.ndarray  # (4 hidden,)


class LstmLayer:
    """An LSTM layer from a zero state: (steps, batch, inputs) -> every step's hidden state (steps, batch, hidden)."""

    def __init__(self, weights: LstmWeights) -> None:
        self.hidden_size = weights.weight_hh.shape[1]
        # 1/2 on the rows of the gates that take a sigmoid (input, forget, output), 1 on the cell gate's (tanh)
        scale = np.full(4 * self.hidden_size, 0.5, np.float32)
        scale[2 * self.hidden_size : 3 * self.hidden_size] = 1.0
        self.input_matrix = np.ascontiguousarray((weights.weight_ih * scale[:, None]).T, dtype=np.float32)
        self.hidden_matrix = np.ascontiguousarray((weights.weight_hh * scale[:, None]).T, dtype=np.float32)
        self.bias = ((weights.bias_ih + weights.bias_hh) * scale).astype(np.float32)

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        with _blas().limit(limits=1, user_api="blas"):
            return self._run(inputs)

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        steps, batch, _ = inputs.shape
        size = self.hidden_size
        input_gates = (inputs.reshape(steps * batch, -1) @ self.input_matrix + self.bias).reshape(steps, batch, -1)
        hidden = np.zeros((batch, size), np.float32)
        cell = np.zeros((batch, size), np.float32)
        states = np.empty((steps, batch, size), np.float32)
        for step in range(steps):
            gates = np.tanh(input_gates[step] + hidden @ self.hidden_matrix)
            sigmoids = gates * 0.5 + 0.5  # of the input, forget and output gates (the cell gate's slot is unused)
            cell = sigmoids[:, size : 2 * size] * cell + sigmoids[:, :size] * gates[:, 2 * size : 3 * size]
            hidden = sigmoids[:, 3 * size :] * np.tanh(cell)
            states[step] = hidden
        return states


@lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
