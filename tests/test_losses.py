"""unet_course.losses against PyTorch's own cross-entropy and a hand-written Dice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from unet_course.losses import soft_dice_loss, weighted_cross_entropy


def batch(seed=0, n=2, c=3, h=7, w=9, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    target = torch.randint(0, c, (n, h, w), generator=g)
    weights = 10 * torch.rand(n, h, w, generator=g, dtype=torch.float64)
    return logits, target, weights


@pytest.mark.parametrize("seed", range(3))
def test_equals_torch_cross_entropy_times_w_for_every_reduction(seed):
    logits, target, w = batch(seed)
    per_pixel = F.cross_entropy(logits, target, reduction="none") * w
    torch.testing.assert_close(weighted_cross_entropy(logits, target, w, reduction="none"),
                               per_pixel)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, w), per_pixel.mean())
    torch.testing.assert_close(weighted_cross_entropy(logits, target, w, reduction="sum"),
                               per_pixel.sum())
    torch.testing.assert_close(weighted_cross_entropy(logits, target, w, reduction="weighted_mean"),
                               per_pixel.sum() / w.sum())


def test_weighted_mean_equals_torch_class_weights_when_w_depends_on_the_class_only():
    logits, target, _ = batch(4, c=2)
    class_w = torch.tensor([0.7, 2.5], dtype=torch.float64)
    w = class_w[target]
    torch.testing.assert_close(
        weighted_cross_entropy(logits, target, w, reduction="weighted_mean"),
        F.cross_entropy(logits, target, weight=class_w),
    )


def test_unit_weights_give_the_plain_cross_entropy():
    logits, target, _ = batch(1)
    ones = torch.ones(target.shape, dtype=torch.float64)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, ones),
                               F.cross_entropy(logits, target))


def test_matches_the_definition_with_softmax_written_out():
    logits, target, w = batch(2, scale=1.0)
    p = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    p_true = p.gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(weighted_cross_entropy(logits, target, w, reduction="sum"),
                               -(w * torch.log(p_true)).sum())


def test_is_stable_for_huge_logits():
    logits = torch.tensor([[[[1e4]], [[-1e4]]]], dtype=torch.float32)  # (1, 2, 1, 1)
    target = torch.tensor([[[1]]])
    w = torch.full((1, 1, 1), 2.0)
    loss = weighted_cross_entropy(logits, target, w)
    # -log p_1 = 2e4 exactly (log-sum-exp), where log(softmax) would give inf
    assert torch.isfinite(loss) and loss.item() == pytest.approx(2 * 2e4)


def test_gradient_matches_torch():
    logits, target, w = batch(3)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    weighted_cross_entropy(a, target, w).backward()
    (F.cross_entropy(b, target, reduction="none") * w).mean().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_float32_weight_map_with_float32_logits_and_numpy_built_weights():
    logits, target, w = batch(5)
    w32 = torch.from_numpy(w.numpy().astype(np.float32))
    loss = weighted_cross_entropy(logits.float(), target, w32)
    assert loss.dtype == torch.float32


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(2, 4), h=st.integers(1, 6), w=st.integers(1, 6),
       seed=st.integers(0, 10_000), scale=st.floats(0.01, 50.0))
def test_property_equals_torch(n, c, h, w, seed, scale):
    logits, target, weights = batch(seed, n, c, h, w, scale)
    expected = (F.cross_entropy(logits, target, reduction="none") * weights).mean()
    torch.testing.assert_close(weighted_cross_entropy(logits, target, weights), expected)


def test_bad_shapes_and_types_say_what_to_pass():
    logits, target, w = batch(0, h=8, w=8)
    with pytest.raises(ValueError, match=r"target\[:, 0\]"):
        weighted_cross_entropy(logits, target[:, None], w)
    with pytest.raises(TypeError, match=r"target.long\(\)"):
        weighted_cross_entropy(logits, target.float(), w)
    with pytest.raises(ValueError, match="center_crop"):
        weighted_cross_entropy(logits[..., 2:-2, 2:-2], target, w)
    with pytest.raises(TypeError, match="torch.from_numpy"):
        weighted_cross_entropy(logits, target, w.numpy())
    with pytest.raises(ValueError, match=r"weight_map\[:, 0\]"):
        weighted_cross_entropy(logits, target, w[:, None])
    with pytest.raises(ValueError, match="unsqueeze"):
        weighted_cross_entropy(logits[0], target, w)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        weighted_cross_entropy(logits, target + 1, w)
    with pytest.raises(ValueError, match="reduction"):
        weighted_cross_entropy(logits, target, w, reduction="avg")
    with pytest.raises(ValueError, match="2 images"):
        weighted_cross_entropy(logits, target[:1], w[:1])


# ------------------------------------------------------------------------------ soft Dice


def dice_by_hand(logits, target, smooth):
    probs = torch.softmax(logits, dim=1)
    n, c = probs.shape[:2]
    out = torch.empty(n, c, dtype=probs.dtype)
    for i in range(n):
        for k in range(c):
            t = (target[i] == k).to(probs.dtype)
            p = probs[i, k]
            out[i, k] = 1 - (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_soft_dice_matches_the_formula(seed):
    logits, target, _ = batch(seed)
    torch.testing.assert_close(soft_dice_loss(logits, target, reduction="none"),
                               dice_by_hand(logits, target, 1e-5))
    torch.testing.assert_close(soft_dice_loss(logits, target, include_background=False),
                               dice_by_hand(logits, target, 1e-5)[:, 1:].mean())


def test_soft_dice_is_zero_for_a_confident_right_answer_and_near_one_for_a_wrong_one():
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    target[0, 1:4, 2:5] = 1
    right = F.one_hot(target, 2).permute(0, 3, 1, 2).double() * 100.0
    assert soft_dice_loss(right, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = F.one_hot(1 - target, 2).permute(0, 3, 1, 2).double() * 100.0
    assert soft_dice_loss(wrong, target).item() == pytest.approx(1.0, abs=1e-6)


def test_soft_dice_is_differentiable_and_bounded():
    logits, target, _ = batch(6)
    logits.requires_grad_(True)
    loss = soft_dice_loss(logits, target)
    loss.backward()
    assert 0.0 <= loss.item() <= 1.0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ weights that mean nothing


@pytest.mark.parametrize("bad, count", [(-1.0, "1 negative, 0 NaN and 0 infinite"),
                                        (float("nan"), "0 negative, 1 NaN and 0 infinite"),
                                        (float("inf"), "0 negative, 0 NaN and 1 infinite")])
def test_negative_or_non_finite_weights_are_refused(bad, count):
    logits, target, weights = batch(0)
    weights[1, 3, 4] = bad
    for reduction in ("mean", "sum", "weighted_mean", "none"):
        with pytest.raises(ValueError, match=f"finite and >= 0.*{count}"):
            weighted_cross_entropy(logits, target, weights, reduction)


def test_all_zero_weights_give_zero_loss_and_zero_gradient():
    logits, target, weights = batch(1)
    logits.requires_grad_(True)
    loss = weighted_cross_entropy(logits, target, torch.zeros_like(weights), "weighted_mean")
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    # some zero weights change nothing: still the sum over the weights' sum
    weights[0] = 0
    expected = (F.cross_entropy(logits, target, reduction="none") * weights).sum() / weights.sum()
    torch.testing.assert_close(weighted_cross_entropy(logits, target, weights, "weighted_mean"), expected)


@pytest.mark.parametrize("smooth", [0.0, -1.0, float("nan")])
def test_soft_dice_needs_a_positive_smooth(smooth):
    logits, target, _ = batch(2)
    with pytest.raises(ValueError, match="soft_dice_loss: smooth must"):
        soft_dice_loss(logits, target, smooth=smooth)
