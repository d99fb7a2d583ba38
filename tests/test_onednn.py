"""Linear layers through oneDNN (avbench.methods.onednn): the same maps and gradients as
``F.linear``, a working double backward, and BLAS where oneDNN does not pay or does not apply."""

import pytest
import torch
import torch.nn.functional as F

from avbench.methods import onednn
from avbench.methods.onednn import Linear, engine, linear, uses_onednn

needs_onednn = pytest.mark.skipif(not onednn._AVAILABLE, reason="this torch build has no oneDNN linear op")


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


@needs_onednn
@pytest.mark.parametrize("shape", [(256, 512), (4, 64, 512)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_f_linear_forward_and_backward(shape, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(300, 512, generator=g, requires_grad=True)
    b = torch.randn(300, generator=g, requires_grad=True) if bias else None
    assert uses_onednn(x, w)
    out, ref = linear(x, w, b), F.linear(x, w, b)
    assert out.shape == ref.shape
    _close(out, ref)
    up = torch.randn(ref.shape, generator=g)
    leaves = [t for t in (x, w, b) if t is not None]
    got = torch.autograd.grad(out, leaves, up)
    want = torch.autograd.grad(ref, leaves, up)
    for a, e in zip(got, want):
        _close(a, e)


@needs_onednn
def test_double_backward_as_a_gradient_penalty_takes_it():
    """f-VAEGAN-D2's critic penalty differentiates a gradient: the oneDNN backward is differentiable."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 512, generator=g, requires_grad=True)
    w1, w2 = (torch.randn(d, 512 if i == 0 else 300, generator=g, requires_grad=True) for i, d in enumerate((300, 1)))

    def penalty(lin):
        h = torch.relu(lin(x, w1))
        (gx,) = torch.autograd.grad(lin(h, w2).sum(), x, create_graph=True)
        return ((gx.norm(dim=1) - 1) ** 2).mean()

    ours, ref = penalty(linear), penalty(F.linear)
    _close(ours, ref)
    for a, e in zip(torch.autograd.grad(ours, (w1, w2)), torch.autograd.grad(ref, (w1, w2))):
        _close(a, e)


@needs_onednn
def test_same_inputs_same_bits():
    g = torch.Generator().manual_seed(2)
    x, w = torch.randn(256, 512, generator=g), torch.randn(300, 512, generator=g)
    assert torch.equal(linear(x, w), linear(x, w))


@needs_onednn
def test_blas_where_onednn_does_not_pay_or_apply():
    w = torch.randn(64, 300)
    assert not uses_onednn(torch.randn(30, 300), w)  # 30 class embeddings: below MIN_MACS
    assert uses_onednn(torch.randn(256, 300), w) and engine(torch.device("cpu")) == "oneDNN"
    assert not uses_onednn(torch.randn(256, 300, dtype=torch.float64), w.double())
    torch.backends.mkldnn.enabled = False  # torch's switch
    try:
        assert not uses_onednn(torch.randn(256, 300), w) and engine(torch.device("cpu")) == "BLAS"
        x = torch.randn(256, 300)
        assert torch.equal(linear(x, w), F.linear(x, w))
    finally:
        torch.backends.mkldnn.enabled = True


def test_linear_module_keeps_nn_linear_parameters_and_state_dict():
    torch.manual_seed(3)
    ours = Linear(512, 300)
    torch.manual_seed(3)
    ref = torch.nn.Linear(512, 300)
    assert isinstance(ours, torch.nn.Linear)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    x = torch.randn(256, 512)
    _close(ours(x), ref(x))
