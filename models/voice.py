"""DIMNet-voice: the voice subnet of the seed (a 1-D CNN over 64-band log-mel, averaged over time)."""
from __future__ import annotations

import torch
from torch import nn


class DIMNetVoice(nn.Module):
    """Five Conv1d layers (kernel 3, stride 2, padding 1), BatchNorm+ReLU after all but the last, then mean over time.

    Input: (batch, 64, frames) normalised log-mel. Output: (batch, channels[-1]). Because the last step is a
    plain average over time, a longer clip changes the output only through what it adds to that average.
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            last = index == len(channels) - 2
            layers.append(nn.Conv1d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=last))
            if not last:
                layers += [nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.output_dim = channels[-1]

    def frame_outputs(self, mel: torch.Tensor) -> torch.Tensor:
        """Per-frame outputs before the time average: (batch, output_dim, frames / 32)."""
        return self.layers(mel)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.frame_outputs(mel).mean(dim=2)
