"""GCN, Eq. (6)–(7), and the losses, Eq. (8)–(12): hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.lagnh.gcn import GCN, GraphConv, graph_conv
from pipeline.lagnh.losses import (
    classification_loss,
    cosine_reconstruction_loss,
    cosine_similarity_matrix,
    discriminator_loss,
    feature_reconstruction_loss,
    generator_adversarial_loss,
    inner_product_reconstruction_loss,
    quantization_loss,
    sign_codes,
    total_loss,
)


def test_two_layer_gcn_hand_example() -> None:
    # S~ = [[1, 0], [.5, .5]], X_att = I, W1 = [[1, 0], [0, -1]], W2 = [[2, 1]], no bias
    # layer 1: S~ X W1^T = [[1, 0], [.5, -.5]] -> ReLU -> [[1, 0], [.5, 0]]
    # layer 2: S~ H W2^T = [[1, 0], [.75, 0]] @ [2, 1]^T = [[2], [1.5]]
    gcn = GCN(2, 2, 1, bias=False)
    with torch.no_grad():
        gcn.conv1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        gcn.conv2.weight.copy_(torch.tensor([[2.0, 1.0]]))
    s = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    h1 = gcn.layer1(torch.eye(2), s)
    assert torch.equal(h1, torch.tensor([[1.0, 0.0], [0.5, 0.0]]))
    assert torch.equal(gcn(torch.eye(2), s), torch.tensor([[2.0], [1.5]]))


def test_graph_conv_association_is_value_preserving() -> None:
    g = torch.Generator().manual_seed(0)
    s, h = torch.rand(5, 5, generator=g), torch.randn(5, 3, generator=g)
    wide, narrow = torch.randn(7, 3, generator=g), torch.randn(2, 3, generator=g)
    assert torch.allclose(graph_conv(s, h, wide), s @ h @ wide.T, atol=1e-5)
    assert torch.allclose(graph_conv(s, h, narrow), s @ h @ narrow.T, atol=1e-5)
    bias = torch.ones(2)
    assert torch.allclose(graph_conv(s, h, narrow, bias), s @ h @ narrow.T + 1, atol=1e-5)


def test_graph_conv_init_switch() -> None:
    torch.manual_seed(0)
    conv = GraphConv(4, 3, bias=False, init="xavier")
    assert conv.bias is None
    bound = math.sqrt(6.0 / (4 + 3))
    assert conv.weight.abs().max() <= bound
    with pytest.raises(ValueError, match="valid values"):
        GraphConv(4, 3, init="orthogonal")


def test_sign_codes_zero_to_minus_one() -> None:
    z = torch.tensor([0.3, 0.0, -2.0])
    assert torch.equal(sign_codes(z), torch.tensor([1.0, -1.0, -1.0]))
    assert torch.equal(sign_codes(z, zero=0.0), torch.tensor([1.0, 0.0, -1.0]))


def test_quantization_loss_hand_example() -> None:
    # z = [[.5, -2], [0, 1.5]], B = sgn z = [[1, -1], [-1, 1]]:
    # (.25 + 1 + 1 + .25) / 4 = 0.625; with sgn(0) = 0 (torch.sign): (.25 + 1 + 0 + .25)/4 = .375
    z = torch.tensor([[0.5, -2.0], [0.0, 1.5]], requires_grad=True)
    assert quantization_loss(z).item() == pytest.approx(0.625)
    assert quantization_loss(z, zero=0.0).item() == pytest.approx(0.375)
    quantization_loss(z).backward()  # B is a constant: d/dz mean((B - z)^2) = 2 (z - B) / 4
    expected = 2 * (z.detach() - torch.tensor([[1.0, -1.0], [-1.0, 1.0]])) / 4
    assert torch.allclose(z.grad, expected)


def test_cosine_reconstruction_hand_example() -> None:
    # z1 = (1, 0), z2 = (1, 1): [cos]_+ = [[1, .7071], [.7071, 1]]
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # target ones, k = 1: 2 (1 - .7071)^2 / 4 = 0.042893
    assert cosine_reconstruction_loss(z, torch.ones(2, 2)).item() == pytest.approx(
        2 * (1 - 1 / math.sqrt(2)) ** 2 / 4, rel=1e-5)
    # paper target S^a = YY^T with Y = [[1, 1], [1, 0]]: [[2, 1], [1, 1]]
    # (2-1)^2 + 2 (1 - .7071)^2 + (1-1)^2 = 1.171573, / 4 = 0.292893
    s_a = torch.tensor([[2.0, 1.0], [1.0, 1.0]])
    assert cosine_reconstruction_loss(z, s_a).item() == pytest.approx(0.292893, rel=1e-5)
    # k = 0.5 halves the target: (1-1)^2 + 2 (.5-.7071)^2 + (.5-1)^2 = .335786 / 4 = .083946
    assert cosine_reconstruction_loss(z, s_a, k=0.5).item() == pytest.approx(0.083946, rel=1e-4)
    # negative cosines are clipped: z = (1, 0), (-1, 0) -> [cos]_+ = I
    zneg = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert cosine_reconstruction_loss(zneg, torch.eye(2)).item() == pytest.approx(0.0, abs=1e-7)


def test_inner_product_and_feature_reconstruction() -> None:
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # Z Z^T = [[1, 1], [1, 2]]
    # target I: (0 + 1 + 1 + 1) / 4 = 0.75
    assert inner_product_reconstruction_loss(z, torch.eye(2)).item() == pytest.approx(0.75)
    x, x_hat = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    assert feature_reconstruction_loss(x, x_hat).item() == pytest.approx(2.5)


def test_adversarial_losses() -> None:
    zeros = torch.zeros(3, 1)
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert generator_adversarial_loss(zeros).item() == pytest.approx(math.log(2), rel=1e-6)
    # a confident, correct discriminator has a small loss; the generator then a large one
    big = torch.full((3, 1), 10.0)
    assert discriminator_loss(big, -big).item() < 1e-3
    assert generator_adversarial_loss(-big).item() == pytest.approx(10.0, rel=1e-3)


def test_classification_loss_kinds_agree() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    y = (torch.rand(5, 4, generator=g) < 0.5).float()
    bce = classification_loss(logits, y, "bce")
    assert torch.allclose(bce, classification_loss(logits, y, "soft_margin"), atol=1e-6)
    # hand example: logit 0 -> log 2 whatever the label
    assert classification_loss(torch.zeros(2, 3), y[:2, :3]).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="valid values"):
        classification_loss(logits, y, "hinge")


def test_total_loss_eq12() -> None:
    t = torch.tensor
    assert total_loss(t(1.0), t(0.01), t(0.5), t(2.0), 100, 1, 0.1).item() == pytest.approx(2.7)
    assert total_loss(t(1.0), t(0.01), t(0.5), None, 100, 1, 0.1).item() == pytest.approx(2.5)


def test_cosine_reconstruction_matches_written_out_formula() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 6, generator=g, dtype=torch.float64)
    z[3] = 0.0  # a zero row has cosine 0 with everything
    y = (torch.rand(10, 4, generator=g) < 0.5).double()
    target = y @ y.T
    vals, grads = [], []
    for fn in (lambda t: cosine_reconstruction_loss(t, target, k=0.8),
               lambda t: (0.8 * target - cosine_similarity_matrix(t).clamp_min(0.0))
               .square().mean()):
        zr = z.clone().requires_grad_(True)
        loss = fn(zr)
        loss.backward()
        vals.append(loss.detach())
        grads.append(zr.grad)
    assert torch.allclose(vals[0], vals[1], atol=1e-12)
    assert torch.allclose(grads[0], grads[1], atol=1e-10)
    zc = z[[0, 1, 2, 4]].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: cosine_reconstruction_loss(t, target[:4, :4], 0.8), (zc,))
