"""Each Triton kernel against its plain-torch reference: compiled on a GPU, else in Triton's CPU interpreter.

Shapes are tiny (the interpreter runs a program in Python) and deliberately odd: sizes that are
not powers of two exercise the masks, views with unusual strides the address arithmetic. fp32
must match to rounding; bf16 to a couple of ulp (the reference rounds every intermediate to
bf16, the kernels only their stores, and the interpreter truncates rather than rounds those).
"""

import pytest
import torch

from eqr.kernels import dispatch, reference, rng
from eqr.kernels import triton_ops as ops
from eqr.kernels.reference import SlotNoise

DTYPES = [torch.float32, torch.bfloat16]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1.6e-2, "atol": 1.6e-2}
    torch.testing.assert_close(actual.float(), expected.float(), **tol)


def strided(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A non-contiguous view: every other row of the second axis of a larger tensor."""
    big = torch.randn(shape[0], 2 * shape[1], *shape[2:], dtype=dtype, device=device)
    return big[:, ::2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [-1, -2])
@pytest.mark.parametrize("shape", [(3, 7, 13), (2, 97, 5), (1, 1, 33)])
def test_add_rms_norm(dtype: torch.dtype, dim: int, shape: tuple[int, ...], device: torch.device) -> None:
    torch.manual_seed(0)
    x, r = torch.randn(shape, dtype=dtype, device=device), torch.randn(shape, dtype=dtype, device=device)
    assert_close(ops.add_rms_norm(x, r, 1e-5, dim), reference.add_rms_norm(x, r, 1e-5, dim), dtype)


@pytest.mark.parametrize("dim", [-1, -2])
def test_add_rms_norm_strided_inputs(dim: int, device: torch.device) -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 11, 6, device=device).transpose(1, 2)  # [3, 6, 11] with the last axis strided
    r = strided((3, 6, 11), torch.float32, device)
    assert not x.is_contiguous() and not r.is_contiguous()
    assert_close(ops.add_rms_norm(x, r, 1e-5, dim), reference.add_rms_norm(x, r, 1e-5, dim), torch.float32)


def test_add_rms_norm_channels_of_2d_and_4d(device: torch.device) -> None:
    torch.manual_seed(2)
    for shape in [(5, 9), (2, 3, 4, 9)]:
        x, r = torch.randn(shape, device=device), torch.randn(shape, device=device)
        assert_close(ops.add_rms_norm(x, r, 1e-5), reference.add_rms_norm(x, r, 1e-5), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "dim"), [((3, 5, 14), -1), ((2, 22, 7), -2), ((4, 6), -1), ((2, 3, 10, 3), 2)])
def test_swiglu(dtype: torch.dtype, shape: tuple[int, ...], dim: int, device: torch.device) -> None:
    torch.manual_seed(3)
    gu = torch.randn(shape, dtype=dtype, device=device)
    assert_close(ops.swiglu(gu, dim), reference.swiglu(gu, dim), dtype)


def test_swiglu_strided_input(device: torch.device) -> None:
    torch.manual_seed(4)
    gu = torch.randn(2, 9, 16, device=device).transpose(1, 2)  # [2, 16, 9]: gate|up halves along a strided axis
    assert_close(ops.swiglu(gu, -2), reference.swiglu(gu, -2), torch.float32)
    gu = strided((3, 5, 12), torch.float32, device)
    assert_close(ops.swiglu(gu, -1), reference.swiglu(gu, -1), torch.float32)


def _noise(scale: list[float], device: torch.device) -> SlotNoise:
    b = len(scale)
    # negative and > 2**32 seeds exercise both 32-bit halves of the key
    seeds = torch.tensor([7, -3, 2**40 + 11, 123456789][:b], dtype=torch.long, device=device)
    steps = torch.tensor([0, 5, 1000, 3][:b], dtype=torch.long, device=device)
    return SlotNoise(seeds, steps, torch.tensor(scale, device=device))


@pytest.mark.parametrize("call", [0, 3, 1024 + 5])
def test_update_noise_is_rng_normal(call: int, device: torch.device) -> None:
    """With z = F = 0, λ = 0 and σ = 1 the kernel writes ξ itself: the reference's numbers.

    The uniforms are the same bits (one wrong hash bit would make a wholly different number, an
    O(1) error), so the only difference left is the ndtri evaluation: a few fp32 ulp.
    """
    noise = _noise([1.0, 1.0, 1.0, 1.0], device)
    z = torch.zeros(4, 37, 19, device=device)
    out, sums = ops.damped_update(z, z, 0.0, noise, call)
    expect = rng.normal(noise.seeds, noise.steps, call, (37, 19))
    assert sums is None
    assert (out - expect).abs().max() < 5e-6
    assert expect.abs().max() > 3  # the tails were exercised


@pytest.mark.parametrize("dtype", DTYPES)
def test_damped_update_with_residual_sums(dtype: torch.dtype, device: torch.device) -> None:
    torch.manual_seed(5)
    noise = _noise([0.5, 0.0, 0.02], device)
    z = torch.randn(3, 14, 9, device=device).to(dtype).transpose(1, 2)  # [3, 9, 14], strided
    fz = torch.randn(3, 9, 14, dtype=dtype, device=device)
    base = strided((3, 9, 14), dtype, device)
    out, sums = ops.damped_update(z, fz, 0.95, noise, 2, base=base)
    expect = reference.damped_update(z, fz, 0.95, noise, 2)
    assert_close(out, expect, dtype)
    expect_sums = torch.stack(
        [(out.float() - base.float()).square().sum(dim=(1, 2)), base.float().square().sum(dim=(1, 2))], dim=1
    )
    torch.testing.assert_close(sums, expect_sums, rtol=1e-5, atol=1e-5)


def test_damped_update_without_noise(device: torch.device) -> None:
    torch.manual_seed(6)
    z, fz = torch.randn(2, 5, 3, device=device), torch.randn(2, 5, 3, device=device)
    out, _ = ops.damped_update(z, fz, 0.9, None, 0)
    assert_close(out, reference.damped_update(z, fz, 0.9, None, 0), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("cells", "vocab"), [(81, 11), (13, 3), (1, 6)])
def test_step_deltas(dtype: torch.dtype, cells: int, vocab: int, device: torch.device) -> None:
    torch.manual_seed(7)
    logits = torch.randn(3, cells, vocab, dtype=dtype, device=device)
    prev = strided((3, cells, vocab), dtype, device)
    prev_pred = torch.randint(0, vocab, (3, cells), device=device)
    prev_pred[0] = -1  # a fresh slot: every cell counts as changed
    pred, change, delta = ops.step_deltas(logits, prev, prev_pred)
    ref_pred, ref_change, ref_delta = reference.step_deltas(logits, prev, prev_pred)
    assert torch.equal(pred, ref_pred) and torch.equal(change, ref_change)
    torch.testing.assert_close(delta, ref_delta, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("positions", "out"), [(97, 512), (81, 24), (16, 7)])
def test_token_mix_is_the_matmul(positions: int, out: int, device: torch.device) -> None:
    """The GPU's token-mixing GEMM (stride-0 weight batch, positions zero-padded to 8) is torch.matmul's product."""
    torch.manual_seed(8)
    w, x = torch.randn(out, positions, device=device), torch.randn(3, positions, 10, device=device)
    expected = torch.matmul(w, x)
    for actual in (dispatch.aligned_batched_matmul(w, x), dispatch.token_mix(w, x)):
        assert actual.is_contiguous()
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4)
