"""Small building blocks shared by method files."""

from __future__ import annotations

import contextlib
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from avbench.methods.onednn import Linear


def rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` for a 1-D long ``index``: the same rows, through ``index_select``.

    On the CPU advanced indexing and its backward (``index_put_`` with accumulation)
    are slow for a few hundred rows, and with several threads (outside deterministic
    mode) that backward adds repeated rows with atomics in a thread-scheduled order, so
    two runs differ. ``index_select``'s backward (``index_add_``) adds the rows serially
    in index order, as one-thread and deterministic-mode ``index_put_`` do: the same
    numbers bit for bit, and the same at two threads whether or not deterministic mode
    is on. 256 rows of 300 on a 2-core CPU, one thread: gather 92 -> 16 us, backward
    112 -> 37 us; an AVCA step (6 gathers) about 3 % faster at two threads.
    """
    return x.index_select(0, index)


def gathered(net: nn.Sequential, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``net(x[index])`` with the first layer (a Linear) run once per row of ``x``: for class
    embeddings, a few dozen rows instead of one per batch row. The later layers (BatchNorm
    among them) still see the gathered batch."""
    x = rows(net[0](x), index)
    for layer in itertools.islice(net, 1, None):  # not net[1:]: a new Sequential per call
        x = layer(x)
    return x


@contextlib.contextmanager
def intra_op_threads(n: int):
    """Run the block with ``n`` intra-op threads (this thread's setting), restored afterwards."""
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


SHORT_SEQUENCE = 4  # keys; at most this many: attention on one CPU thread (see ``attention``)


class _OneThreadAttention(torch.autograd.Function):
    """``F.scaled_dot_product_attention`` with its forward and backward on one intra-op thread:
    the same kernels on the same inputs (their own autograd graph, kept until backward)."""

    @staticmethod
    def forward(ctx, q, k, v, attn_mask):
        with intra_op_threads(1), torch.enable_grad():
            leaves = tuple(t.detach().requires_grad_(t.requires_grad) for t in (q, k, v))
            out = F.scaled_dot_product_attention(*leaves, attn_mask=attn_mask)
        ctx.graph = (leaves, out)
        return out.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        leaves, out = ctx.graph
        wanted = [t for t in leaves if t.requires_grad]
        with intra_op_threads(1):
            grads = iter(torch.autograd.grad(out, wanted, grad))
        return tuple(next(grads) if t.requires_grad else None for t in leaves) + (None,)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask)``, bit for bit, faster for a few tokens on a CPU.

    The CPU kernel splits its work per (batch row, head); for the 2-4 modality tokens of
    AVCA, MFT and EZ-AVGZL each piece is a few hundred flops, and at two threads the
    kernel (forward and backward) takes about twice as long as at one. So with at most
    ``SHORT_SEQUENCE`` keys on a CPU it runs on one intra-op thread (its results do not
    depend on the thread count). 2-core AMD EPYC, forward + backward, [B, heads, T, d]:
    AVCA's [256, 3, 2, 100] 2.45 -> 1.53 ms, MFT's [64, 4, 2, 64] 1.33 -> 0.40 ms,
    EZ-AVGZL's [256, 4, 4, 32] 3.40 -> 1.91 ms; from 6 keys at batch 256 (TCAF's
    sequences) two threads are faster, and it keeps them. A whole training step at two
    threads (in-process paired A/B): AVCA about 1.0 ms (3 %) shorter, EZ-AVGZL 1.8 ms (6 %).
    """
    if q.device.type != "cpu" or k.shape[-2] > SHORT_SEQUENCE or torch.get_num_threads() == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _OneThreadAttention.apply(q, k, v, attn_mask)
    with intra_op_threads(1):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


class Dropout(nn.Module):
    """Inverted dropout, the semantics of ``nn.Dropout`` with ``p`` on a 2⁻¹⁵ grid, cheaper on CPU.

    ``nn.Dropout`` draws one float per element with ``bernoulli_``; dropout masks
    are a large share of a small model's step (18 masks in an AVCA step). Here one
    64-bit draw of torch's generator (``random_`` on int64, uniform on [0, 2⁶³))
    gives four elements, each the low 15 bits of one 16-bit word: an element is
    kept when its 15-bit number is ≥ round(p·2¹⁵), so the drop probability is p
    rounded to a multiple of 2⁻¹⁵ (off by at most 1.5e-5), and kept elements are
    scaled by the exact 1/(1 − p_rounded), so the expectation is unchanged.
    A 256×512 mask costs 0.16 ms instead of 0.34 ms (``rand`` + compare) on one
    2-core CPU; ``benchmarks/epoch_speed.py`` measures the effect on an epoch.
    Masks come from torch's global generator, so they are seeded by
    ``torch.manual_seed`` like everything else.
    """

    _BITS = 15

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        levels = 1 << self._BITS
        self._threshold = round(self.p * levels)
        self._scale = levels / (levels - self._threshold) if self._threshold < levels else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self._threshold == 0:
            return x
        if self._scale == 0.0:
            return x * 0.0
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
        r = words.view(torch.int16)[:n].view(x.shape).bitwise_and_((1 << self._BITS) - 1)
        return x * r.ge_(self._threshold).to(x.dtype).mul_(self._scale)

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
            layers.append(Linear(d_in, hidden))
            if hidden_bn:
                layers.append(nn.BatchNorm1d(hidden))
            layers += [nn.ReLU(), Dropout(dropout)]
            d_in = hidden
        layers += [Linear(d_in, d_out), nn.BatchNorm1d(d_out, momentum=momentum), nn.ReLU(), Dropout(dropout)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_gathered(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``forward(x[index])`` for a one-layer net, with the Linear run once per row of ``x``
        (a few dozen class embeddings instead of every batch row); BatchNorm still sees the rows."""
        return gathered(self.net, x, index)
