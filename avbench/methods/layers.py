"""Small building blocks shared by method files."""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    """Inverted dropout, same semantics as ``nn.Dropout``, cheaper mask on CPU.

    ``nn.Dropout`` draws its mask with ``bernoulli_``, which on CPU costs about
    twice as much as ``rand`` + compare; dropout masks are a large share of a
    small model's step. Masks come from torch's global generator, so they are
    seeded by ``torch.manual_seed`` like everything else.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        mask = torch.rand(x.shape, device=x.device, dtype=x.dtype).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
