"""Linear maps on the CPU through oneDNN: ``F.linear`` with the matrix products of an
AVX-512 machine running at its full vector width.

torch runs an fp32 ``nn.Linear`` on the CPU with its BLAS (MKL on x86 wheels). MKL takes
its AVX-512 code only on Intel processors; on AMD it runs its AVX2 kernels, so on a
Zen 5 core (two full-width 512-bit FMA pipes) an fp32 product reaches half of that
core's peak: 105 GFLOPS per core for [256, 512] × [512, 300] on a 2-core AMD EPYC
family 26, where oneDNN (shipped inside every x86 torch build, and choosing its kernels
by instruction set, not by vendor) reaches 226. An AVCA training step there, whose
matrix products were more than half of it, takes 23 ms instead of 30
(``benchmarks/epoch_speed.py``). The products are computed in fp32 throughout: the
results agree with BLAS's to fp32 rounding (the order of the additions differs), as
BLAS's own do between CPU models.

:func:`linear` is ``F.linear`` for every input. It goes through oneDNN
(``torch.ops.mkldnn._linear_pointwise``, the op torch's own compiler emits for linear
layers) when the input is fp32 on the CPU, oneDNN is in the torch build and enabled
(``torch.backends.mkldnn.enabled``, torch's switch: False gives BLAS here, and turns off
torch's other oneDNN kernels too), and the product has at least :data:`MIN_MACS`
multiply-adds: below that oneDNN's fixed cost per call (about 15 us) outweighs its faster
kernels (``MIN_MACS`` set out of reach gives BLAS for these products alone). Its backward
computes both products through oneDNN as well, and is itself differentiable (a double
backward, as f-VAEGAN-D2's gradient penalty takes, works). Which engine computes a
product depends only on its shape and the torch build, so a seed still gives the same
numbers on one machine and torch build (both recorded with every result).

Like another CPU model, the other rounding moves single seeds of a short run, not the
means. Synthetic benchmark, platform mode, 6 epochs × 50 batches, seeds 0-4, HM ×100,
oneDNN vs BLAS (``MIN_MACS`` out of reach), 2-core Zen 5: avca 26.48 ± 1.45 vs
26.49 ± 1.23, cjme 14.75 ± 1.07 vs 14.49 ± 1.10, avgzslnet 45.87 ± 1.72 vs 46.76 ± 1.63,
clipclap 44.62 ± 1.99 vs 45.38 ± 1.66, ale 26.02 ± 3.10 vs 25.77 ± 2.92 (single seeds
by up to 4.2 points). Where BLAS already runs AVX-512 (Intel) or a core executes 512-bit
operations in two halves (Zen 4), oneDNN has less or nothing to gain (not measured).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_MACS = 1 << 21  # rows × in × out; 2-core AMD EPYC: (64, 300, 64) about equal, (32, 512, 300) 1.3-1.6× faster


def _available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_AVAILABLE = _available()


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias through oneDNN (any strides; leading dimensions of x kept)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _Linear(torch.autograd.Function):
    """``F.linear`` of a 2-D input through oneDNN, forward and backward."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        # under create_graph the products are recorded (through this Function) for a double backward
        mm = _matmul if torch.is_grad_enabled() else _mm
        grad_x = mm(grad, weight) if ctx.needs_input_grad[0] else None  # [M, N] @ [N, K]
        grad_w = mm(grad.t(), x) if ctx.needs_input_grad[1] else None  # [N, M] @ [M, K]
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b (2-D) through oneDNN, differentiable."""
    return _Linear.apply(a, b.t(), None)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b (2-D) through oneDNN, no graph."""
    return _product(a, b.t(), None)


def _on(device: torch.device) -> bool:
    """oneDNN computes linear maps on ``device``: the CPU, with oneDNN in the build and enabled."""
    return device.type == "cpu" and _AVAILABLE and torch._C._get_mkldnn_enabled()


def uses_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` computes ``F.linear(x, weight)`` through oneDNN."""
    return (
        x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.numel() * weight.shape[0] >= MIN_MACS  # rows × in × out
        and _on(x.device)
    )


def engine(device: torch.device) -> str:
    """Which library computes the large fp32 linear maps on ``device`` (benchmarks print it)."""
    if _on(device):
        return "oneDNN"
    return "cuBLAS" if device.type == "cuda" else "BLAS"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; fp32 products on the CPU through oneDNN (see the module docstring)."""
    if not uses_onednn(x, weight):
        return F.linear(x, weight, bias)
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not needs_grad:
        return _product(x, weight, bias)
    out = _Linear.apply(x.reshape(-1, x.shape[-1]), weight, bias)  # the Function's backward takes 2-D inputs
    return out.view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state dict) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
