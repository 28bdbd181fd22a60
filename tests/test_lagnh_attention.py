"""Cross-modal attention, Eq. (1)–(2): hand-computed 3×2 examples and equivalences."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.lagnh.attention import (
    CrossModalAttention,
    cosine_matrix,
    cross_modal_attention,
    factorized_attention,
    normalize_attention,
)

# 3 images, 2 auxiliary rows, d' = 2.
XBAR = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
YBAR = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
R = 1.0 / math.sqrt(2.0)  # cos 45°


def test_cosine_matrix_hand_example() -> None:
    # cos([1,0],[2,0]) = 1, cos([1,0],[1,1]) = 1/√2, cos([0,1],[2,0]) = 0, cos([0,1],[1,1]) = 1/√2,
    # cos([-1,-1],[2,0]) = -1/√2, cos([-1,-1],[1,1]) = -1
    expected = torch.tensor([[1.0, R], [0.0, R], [-R, -1.0]])
    assert torch.allclose(cosine_matrix(XBAR, YBAR), expected, atol=1e-6)


def test_eq1_eq2_sum_normalisation_hand_example() -> None:
    # Row 1: alpha = [1, 1/√2], weights = alpha / (1 + 1/√2) = [0.5858, 0.4142]
    #   x_att = 0.5858*[2,0] + 0.4142*[1,1] + [1,0] = [2.5858, 0.4142]
    # Row 2: alpha = [0, 1/√2], weights = [0, 1] -> [1,1] + [0,1] = [1, 2]
    # Row 3: alpha = [0, 0] (negative cosines clipped) -> x_att = xbar (no NaN)
    w1 = 1.0 / (1.0 + R)
    expected = torch.tensor([[2 * w1 + (1 - w1) + 1.0, 1 - w1], [1.0, 2.0], [-1.0, -1.0]])
    out = cross_modal_attention(XBAR, YBAR, "sum")
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(out[0], torch.tensor([2.5858, 0.4142]), atol=1e-4)


def test_eq2_authors_l2_normalisation_hand_example() -> None:
    # Row 1: alpha = [1, 1/√2], ||alpha||_2 = √1.5 -> weights [0.8165, 0.5774]
    #   x_att = 0.8165*[2,0] + 0.5774*[1,1] + [1,0] = [3.2103, 0.5774]
    out = cross_modal_attention(XBAR, YBAR, "l2")
    assert torch.allclose(out[0], torch.tensor([3.2103, 0.5774]), atol=1e-4)
    assert torch.allclose(out[1], torch.tensor([1.0, 2.0]), atol=1e-5)
    assert torch.equal(out[2], XBAR[2])


def test_normalize_attention_zero_row_and_unknown() -> None:
    alpha = torch.tensor([[0.0, 0.0], [1.0, 3.0]])
    assert torch.equal(normalize_attention(alpha, "sum")[0], torch.zeros(2))
    assert torch.allclose(normalize_attention(alpha, "sum")[1], torch.tensor([0.25, 0.75]))
    with pytest.raises(ValueError, match="valid values"):
        normalize_attention(alpha, "softmax")


@pytest.mark.parametrize("norm", ["sum", "l2"])
def test_factorized_equals_direct(norm: str) -> None:
    g = torch.Generator().manual_seed(0)
    xbar = torch.randn(6, 8, generator=g)
    coef = torch.randn(5, 3, generator=g)
    basis = torch.randn(3, 8, generator=g)
    direct = cross_modal_attention(xbar, coef @ basis, norm)
    assert torch.allclose(factorized_attention(xbar, coef, basis, norm), direct, atol=1e-5)
    # with a self term: node i attends over the 5 reference rows plus its own row
    self_coef = torch.randn(6, 3, generator=g)
    rows = [cross_modal_attention(xbar[i:i + 1], torch.cat([coef, self_coef[i:i + 1]]) @ basis,
                                  norm) for i in range(6)]
    out = factorized_attention(xbar, coef, basis, norm, self_coef=self_coef)
    assert torch.allclose(out, torch.cat(rows), atol=1e-5)


def test_module_all_zero_aux_row_no_nan() -> None:
    torch.manual_seed(0)
    att = CrossModalAttention(16, 4, 8)
    with torch.no_grad():
        att.lin_y.bias.zero_()  # ȳ of an all-zero label row is the zero vector
    x = torch.randn(5, 16)
    y = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1.0]])
    out = att(x, y)
    assert torch.isfinite(out).all()
    y0 = torch.zeros(5, 4)
    assert torch.allclose(att(x, y0), att.project(x))  # no attention mass -> x_att = x̄


def test_module_matches_reference_formula_and_no_attend() -> None:
    torch.manual_seed(1)
    att = CrossModalAttention(16, 4, 8, norm="sum")
    x, y = torch.randn(7, 16), (torch.rand(7, 4) < 0.5).float()
    expected = cross_modal_attention(att.lin_x(x), att.lin_y(y), "sum")
    assert torch.allclose(att(x, y), expected, atol=1e-5)
    plain = CrossModalAttention(16, 4, 8, attend=False)
    assert plain.lin_y is None
    assert torch.equal(plain(x, y), plain.lin_x(x))
    with pytest.raises(ValueError, match="valid values"):
        CrossModalAttention(16, 4, 8, norm="max")


def test_unit_rows_gradient_and_zero_row() -> None:
    """The row normalisation: gradcheck, and a zero row (norm below eps) stays zero with the
    finite gradient g / eps."""
    from pipeline.lagnh.attention import _unit_rows

    a = torch.randn(5, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: _unit_rows(t), (a.clone().requires_grad_(),))
    a[2] = 0.0  # finite differences are meaningless here; check the gradient's value instead
    g = torch.randn(5, 4, dtype=torch.float64)
    a1 = a.clone().requires_grad_()
    (_unit_rows(a1) * g).sum().backward()
    assert torch.allclose(a1.grad[2], g[2] / 1e-8)
    assert torch.equal(_unit_rows(a.float())[2], torch.zeros(4))
