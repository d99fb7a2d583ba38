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


class EmbeddingNet(nn.Module):
    """The benchmark codes' MLP block (AVCA, TCAF, ClipClap):

        Linear -> BN -> ReLU -> Dropout                                    (no hidden layer)
        Linear -> [BN] -> ReLU -> Dropout -> Linear -> BN -> ReLU -> Dropout   (with ``hidden``)

    ``momentum`` is the last BatchNorm's (the public scripts set it per dataset);
    the hidden BatchNorm keeps torch's default 0.1, as in the public code.
    """

    def __init__(self, d_in: int, d_out: int, dropout: float, momentum: float = 0.1, hidden: int | None = None,
                 hidden_bn: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        if hidden:
            layers.append(nn.Linear(d_in, hidden))
            if hidden_bn:
                layers.append(nn.BatchNorm1d(hidden))
            layers += [nn.ReLU(), Dropout(dropout)]
            d_in = hidden
        layers += [nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out, momentum=momentum), nn.ReLU(), Dropout(dropout)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_gathered(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``forward(x[index])`` for a one-layer net, with the Linear run once per row of ``x``
        (a few dozen class embeddings instead of every batch row); BatchNorm still sees the rows."""
        first, rest = self.net[0], self.net[1:]
        return rest(first(x)[index])
