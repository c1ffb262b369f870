"""Tests for unet_course.augment: the paper's elastic deformation and the other augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from unet_course.augment import (
    Compose,
    ElasticDeform,
    GrayValue,
    RandomFlip,
    RandomRotation,
    RandomShift,
    cubic_upsampling_matrix,
    dense_field,
    dense_field_torch,
    elastic_deform,
    elastic_deform_torch,
    mirror_indices,
    random_grid,
    warp,
)


def blocks(shape=(96, 80), k=6, seed=0, block=16):
    """Blocky instance labels 0..k-1 (big constant squares), int32."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, k, size=(shape[0] // block + 1, shape[1] // block + 1))
    return np.kron(coarse, np.ones((block, block), int))[: shape[0], : shape[1]].astype(np.int32)


# ------------------------------------------------------------------ bicubic interpolation


@given(nodes=st.integers(2, 8), length=st.integers(2, 300))
@settings(max_examples=60, deadline=None)
def test_cubic_matrix_interpolates_and_keeps_constants(nodes, length):
    A = cubic_upsampling_matrix(nodes, length)
    assert A.shape == (length, nodes)
    np.testing.assert_allclose(A.sum(1), 1.0, atol=1e-12)
    # wherever a pixel sits exactly on a node, the row picks that node alone
    pos = np.linspace(0, nodes - 1, length)
    on_node = np.isclose(pos, np.round(pos), atol=1e-12)
    np.testing.assert_allclose(A[on_node], np.eye(nodes)[np.round(pos[on_node]).astype(int)],
                               atol=1e-12)


@given(nodes=st.integers(3, 8), length=st.integers(3, 200), coef=st.tuples(
    *[st.floats(-5, 5, allow_nan=False) for _ in range(3)]))
@settings(max_examples=60, deadline=None)
def test_cubic_matrix_reproduces_quadratics(nodes, length, coef):
    u = np.linspace(0, nodes - 1, length)
    f = lambda x: coef[0] + coef[1] * x + coef[2] * x**2
    A = cubic_upsampling_matrix(nodes, length)
    np.testing.assert_allclose(A @ f(np.arange(nodes, dtype=float)), f(u), atol=1e-9)


def test_cubic_matrix_between_nodes_is_keys_kernel():
    # Keys' kernel with a = -0.5: W(0.5) = 0.5625, W(1.5) = -0.0625
    A = cubic_upsampling_matrix(6, 11)  # pixels at 0, 0.5, 1, ..., 5 node units
    # halfway between nodes 2 and 3 (all four taps are real nodes)
    np.testing.assert_allclose(A[5], [0, -0.0625, 0.5625, 0.5625, -0.0625, 0], atol=1e-12)
    # halfway between nodes 0 and 1 the missing tap f(-1) = 3 f(0) - 3 f(1) + f(2) is folded in
    w_ghost, w0, w1, w2 = -0.0625, 0.5625, 0.5625, -0.0625
    expected = [w0 + 3 * w_ghost, w1 - 3 * w_ghost, w2 + w_ghost, 0, 0, 0]
    np.testing.assert_allclose(A[1], expected, atol=1e-12)


def test_bad_grid_and_sigma():
    with pytest.raises(ValueError, match="at least 2 nodes"):
        cubic_upsampling_matrix(1, 10)
    with pytest.raises(ValueError, match="grid"):
        random_grid(1)
    with pytest.raises(ValueError, match="sigma"):
        random_grid(3, sigma=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        elastic_deform(np.zeros((8, 8)), sigma=float("nan"))


# ------------------------------------------------------------------ the random field


def test_grid_displacements_have_std_sigma():
    rng = np.random.default_rng(0)
    draws = np.stack([random_grid(3, 10.0, rng) for _ in range(1000)])  # 18 000 values
    assert draws.shape == (1000, 2, 3, 3)
    # the sample std of 18 000 normals is within 3 % of sigma with overwhelming probability
    assert abs(draws.std() - 10.0) < 0.3
    assert abs(draws.mean()) < 0.3
    # independent components: no correlation between dy and dx at a node
    assert abs(np.corrcoef(draws[:, 0].ravel(), draws[:, 1].ravel())[0, 1]) < 0.05


def test_dense_field_equals_nodes_at_node_pixels():
    nodes = random_grid(3, 10.0, np.random.default_rng(1))
    field = dense_field(nodes, (101, 61))  # nodes on pixels 0, 50, 100 and 0, 30, 60
    np.testing.assert_allclose(field[:, ::50, ::30], nodes, atol=1e-9)
    # smooth: neighbouring pixels differ by far less than sigma
    assert np.abs(np.diff(field, axis=-1)).max() < 2.0


def test_elastic_deform_field_statistics_at_nodes():
    # recover the displacement at the image centre from a ramp image: the cubic spline
    # reproduces linear ramps, so warp(ramp_x)[c, c] = c + dx(c, c), and dx at the centre node
    # is one of the N(0, sigma) draws
    n = 65
    ramp_y, ramp_x = np.mgrid[0:n, 0:n].astype(np.float64)
    image = np.stack([ramp_y, ramp_x]) + 100.0  # keep away from the clip at the border values
    rng = np.random.default_rng(5)
    d = []
    for _ in range(300):
        out = elastic_deform(image, sigma=4.0, rng=rng)
        d.append(out[:, 32, 32] - image[:, 32, 32])
    d = np.array(d)
    assert abs(d.std() - 4.0) < 0.4


# ------------------------------------------------------------------ warping


def test_sigma_zero_is_identity():
    rng = np.random.default_rng(0)
    image = rng.random((3, 40, 52)).astype(np.float32)
    mask = (rng.random((40, 52)) > 0.5).astype(np.int64)
    inst = blocks((40, 52), k=9)
    out, (m, i) = elastic_deform(image, [mask, inst], sigma=0.0, rng=rng)
    np.testing.assert_allclose(out, image, atol=1e-5)
    assert m.dtype == mask.dtype and i.dtype == inst.dtype
    np.testing.assert_array_equal(m, mask)
    np.testing.assert_array_equal(i, inst)


def test_warp_convention_constant_shift():
    # out[y, x] = in[y + dy, x + dx]: a constant field (0, +3) moves content 3 px to the left
    rng = np.random.default_rng(0)
    image = rng.random((30, 40))
    labels = blocks((30, 40), k=50, block=1)
    field = np.zeros((2, 30, 40))
    field[1] = 3.0
    np.testing.assert_allclose(warp(image, field)[:, :-3], image[:, 3:], atol=1e-6)
    np.testing.assert_array_equal(warp(labels, field, order=0)[:, :-3], labels[:, 3:])
    np.testing.assert_allclose(warp(image, field, order=1)[:, :-3], image[:, 3:], atol=1e-6)
    # past the right border the image is mirrored: column 40 + j reads column 38 - j
    np.testing.assert_array_equal(warp(labels, field, order=0)[:, -3:], labels[:, [38, 37, 36]])


@given(seed=st.integers(0, 10_000), sigma=st.floats(0.0, 25.0), grid=st.integers(2, 5),
       k=st.integers(2, 40))
@settings(max_examples=30, deadline=None)
def test_labels_keep_their_values_and_dtype(seed, sigma, grid, k):
    rng = np.random.default_rng(seed)
    inst = blocks((64, 48), k=k, seed=seed, block=8)
    mask = (inst > 0).astype(np.int64)
    weight = (1.0 + inst).astype(np.float32)
    image = rng.random((64, 48)).astype(np.float32)
    out, (m, i, w) = elastic_deform(image, [mask, inst, weight], grid=grid, sigma=sigma, rng=rng)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert image.min() <= out.min() and out.max() <= image.max()
    assert set(np.unique(m)) <= {0, 1} and m.dtype == np.int64
    assert set(np.unique(i)) <= set(np.unique(inst)) and i.dtype == np.int32
    assert set(np.unique(w)) <= set(np.unique(weight))
    # one field for all: the mask is still exactly "instance id > 0" after warping
    np.testing.assert_array_equal(m, (i > 0).astype(np.int64))


def test_image_and_label_share_the_field():
    inst = blocks((128, 128), k=7, seed=3, block=32)
    image = inst.astype(np.float32) / 6.0
    out, lab = elastic_deform(image, inst, sigma=10.0, rng=np.random.default_rng(4))
    assert not np.array_equal(lab, inst)  # something moved
    # away from the label edges, the warped image shows the warped label's value
    flat = ndi.minimum_filter(lab, 5) == ndi.maximum_filter(lab, 5)
    np.testing.assert_allclose(out[flat], lab[flat] / 6.0, atol=0.02)


def test_same_rng_same_result_and_return_kinds():
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    label = blocks((32, 32))
    a = elastic_deform(image, rng=np.random.default_rng(9))
    b, lab = elastic_deform(image, label, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    assert isinstance(lab, np.ndarray)
    _, labs = elastic_deform(image, (label, label), rng=0)
    assert isinstance(labs, tuple) and len(labs) == 2
    _, labs = elastic_deform(image, [label], rng=0)
    assert isinstance(labs, list)


def test_elastic_deform_bad_input():
    with pytest.raises(ValueError, match="shape"):
        elastic_deform(np.zeros((8, 8)), np.zeros((8, 9), int))
    with pytest.raises(TypeError, match="elastic_deform_torch"):
        elastic_deform(torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        elastic_deform(np.zeros(8))
    with pytest.raises(TypeError, match="rng"):
        elastic_deform(np.zeros((8, 8)), rng="seed")


@pytest.mark.parametrize("n", [1, 2, 7])
def test_mirror_indices_match_numpy_pad(n):
    pad = 3 * n + 2
    ref = np.pad(np.arange(n), pad, mode="reflect") if n > 1 else np.zeros(n + 2 * pad, int)
    np.testing.assert_array_equal(mirror_indices(np.arange(-pad, n + pad), n), ref)


# ------------------------------------------------------------------ torch version


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_torch_version_labels_and_identity(device):
    g = torch.Generator(device=device).manual_seed(0)
    inst = torch.as_tensor(np.stack([blocks((64, 64), k=9, seed=s) for s in range(3)])).long()
    images = (inst[:, None].float() / 8.0).to(device)
    inst = inst.to(device)
    out, lab = elastic_deform_torch(images, inst, sigma=10.0, generator=g)
    assert out.shape == images.shape and lab.shape == inst.shape and lab.dtype == inst.dtype
    assert out.device.type == device
    assert set(lab.unique().tolist()) <= set(inst.unique().tolist())
    assert not torch.equal(lab, inst)
    # per sample fields: the three samples did not move alike
    moved = (lab != inst).float().mean(dim=(1, 2))
    assert len(set(moved.tolist())) > 1
    # image and label share each sample's field
    lab_np, out_np = lab.cpu().numpy(), out.cpu().numpy()[:, 0]
    for s in range(3):
        flat = ndi.minimum_filter(lab_np[s], 5) == ndi.maximum_filter(lab_np[s], 5)
        np.testing.assert_allclose(out_np[s][flat], lab_np[s][flat] / 8.0, atol=0.02)
    same, same_lab = elastic_deform_torch(images, inst, sigma=0.0, generator=g)
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)
    assert torch.equal(same_lab, inst)


def test_torch_field_equals_numpy_field():
    nodes = torch.randn((2, 2, 3, 4), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    field = dense_field_torch(nodes * 10.0, (37, 50))
    for s in range(2):
        np.testing.assert_allclose(field[s].numpy(), dense_field(nodes[s].numpy() * 10.0, (37, 50)),
                                   atol=1e-9)


def test_torch_version_samples_where_the_field_says():
    # warp a linear ramp: the result is ramp + dx. PyTorch's bicubic kernel (a = -0.75)
    # reproduces a ramp only to within a few hundredths of a pixel, hence the tolerance
    n = 64
    ramp = torch.arange(n, dtype=torch.float32).expand(n, n).clone() + 200.0
    g = torch.Generator().manual_seed(3)
    out_t = elastic_deform_torch(ramp[None, None], sigma=5.0, generator=g)[0, 0]
    nodes = torch.randn((1, 2, 3, 3), generator=torch.Generator().manual_seed(3)) * 5.0
    expected = ramp.numpy() + dense_field(nodes[0].numpy(), (n, n))[1]
    inner = (slice(16, -16), slice(16, -16))
    np.testing.assert_allclose(out_t.numpy()[inner], expected[inner], atol=0.06)


def test_torch_version_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        elastic_deform_torch(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="labels"):
        elastic_deform_torch(torch.zeros(1, 1, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))


# ------------------------------------------------------------------ the other augmentations


def test_random_shift_is_an_exact_mirrored_shift():
    rng = np.random.default_rng(0)
    image = rng.random((20, 30)).astype(np.float32)
    label = blocks((20, 30), k=40, block=1)
    out, lab = RandomShift(max_shift=6)(image, label, rng=np.random.default_rng(11))
    dy, dx = np.random.default_rng(11).integers(-6, 7, size=2)
    padded = np.pad(image, 6, mode="reflect")
    np.testing.assert_array_equal(out, padded[6 - dy : 26 - dy, 6 - dx : 36 - dx])
    padded_lab = np.pad(label, 6, mode="reflect")
    np.testing.assert_array_equal(lab, padded_lab[6 - dy : 26 - dy, 6 - dx : 36 - dx])


def test_random_flip_is_a_symmetry_of_the_square():
    image = np.arange(36, dtype=np.float32).reshape(6, 6)
    seen = set()
    for seed in range(80):
        out, lab = RandomFlip()(image, image.astype(np.int64), rng=seed)
        np.testing.assert_array_equal(out, lab)
        assert sorted(out.ravel()) == sorted(image.ravel())
        seen.add(out.tobytes())
    assert len(seen) == 8
    rect = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert {RandomFlip()(rect, rng=s).shape for s in range(20)} == {(3, 4)}


def test_rotation_zero_is_identity_and_labels_stay():
    image = np.random.default_rng(0).random((2, 33, 33)).astype(np.float32)
    label = blocks((33, 33), k=5, block=4)
    out, lab = RandomRotation(0.0)(image, label, rng=0)
    np.testing.assert_allclose(out, image, atol=1e-5)
    np.testing.assert_array_equal(lab, label)
    out, lab = RandomRotation(180.0)(image, label, rng=1)
    assert set(np.unique(lab)) <= set(np.unique(label))


def test_gray_value_changes_only_the_image():
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    label = blocks((32, 32))
    out, lab = GrayValue(contrast=0.5, brightness=0.3, gamma=0.5, noise=0.1)(image, label, rng=3)
    assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    assert not np.allclose(out, image)
    np.testing.assert_array_equal(lab, label)
    same = GrayValue(0.0, 0.0, 0.0, 0.0)(image, rng=3)
    np.testing.assert_allclose(same, image, atol=1e-6)
    with pytest.raises(ValueError, match="gamma"):
        GrayValue(gamma=-1.0)


def test_compose_keeps_image_and_labels_aligned_and_is_reproducible():
    inst = blocks((96, 96), k=7, seed=5, block=24)
    image = inst.astype(np.float32) / 6.0
    aug = Compose([RandomFlip(), RandomShift(8), RandomRotation(30.0), ElasticDeform(sigma=8.0)])
    out, lab = aug(image, inst, rng=np.random.default_rng(2))
    out2, lab2 = aug(image, inst, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(lab, lab2)
    # two cubic resamplings (rotation, elastic) ring a little more near corners: look 3 px away
    flat = ndi.minimum_filter(lab, 7) == ndi.maximum_filter(lab, 7)
    np.testing.assert_allclose(out[flat], lab[flat] / 6.0, atol=0.03)
    # an image alone comes back alone
    assert isinstance(aug(image, rng=0), np.ndarray)
    # p = 0 never applies
    np.testing.assert_array_equal(ElasticDeform(p=0.0)(image, rng=0), image)
    with pytest.raises(ValueError, match="probability"):
        ElasticDeform(p=2.0)
