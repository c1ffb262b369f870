"""unet_course.weights against a plain reference: one full-image distance transform per cell."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from unet_course import weights as W
from unet_course.weights import (
    border_cutoff,
    class_balance_weights,
    separated_mask,
    separation_border,
    unet_weight_map,
)

NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


# ------------------------------------------------------------------------------ references


def border_by_loops(labels: np.ndarray) -> np.ndarray:
    """Cell pixels with an 8-neighbour in another cell, pixel by pixel."""
    H, Wd = labels.shape
    out = np.zeros((H, Wd), bool)
    for r in range(H):
        for c in range(Wd):
            if labels[r, c] == 0:
                continue
            for dr, dc in NEIGHBOURS:
                rr, cc = r + dr, c + dc
                if 0 <= rr < H and 0 <= cc < Wd and labels[rr, cc] not in (0, labels[r, c]):
                    out[r, c] = True
    return out


def border_by_padding(labels: np.ndarray) -> np.ndarray:
    """The same definition, vectorised differently: pad, then compare with all 8 shifts."""
    H, Wd = labels.shape
    padded = np.pad(labels, 1)
    out = np.zeros((H, Wd), bool)
    for dr, dc in NEIGHBOURS:
        other = padded[1 + dr : 1 + dr + H, 1 + dc : 1 + dc + Wd]
        out |= (labels > 0) & (other > 0) & (other != labels)
    return out


def balanced_reference(mask: np.ndarray) -> np.ndarray:
    classes, counts = np.unique(mask, return_counts=True)
    per = {k: mask.size / (len(classes) * n) for k, n in zip(classes, counts)}
    return np.vectorize(per.get, otypes=[float])(mask)


def reference_weight_map(labels, w0=10.0, sigma=5.0, class_weights=None):
    """w = w_c + w0 exp(-(d1 + d2)^2 / 2 sigma^2) with one full-image EDT per cell."""
    cells = np.where(border_by_padding(labels), 0, labels)
    mask = (cells > 0).astype(np.int64)
    if class_weights is None:
        wc = np.ones(labels.shape)
    elif class_weights == "balanced":
        wc = balanced_reference(mask)
    else:
        wc = np.where(mask > 0, class_weights[1], class_weights[0]).astype(float)
    ids = [i for i in np.unique(cells) if i > 0]
    if len(ids) < 2:
        return wc
    dist = np.sort(np.stack([ndi.distance_transform_edt(cells != i) for i in ids]), axis=0)
    term = w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2))
    return wc + np.where(mask == 0, term, 0.0)


def random_cells(rng: np.random.Generator, size: int, n: int, r=(3.0, 9.0)) -> np.ndarray:
    """Random discs painted one over the other: many touch, ids are not consecutive."""
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    ids = rng.choice(np.arange(1, 10 * n + 1), size=n, replace=False)
    for i in ids:
        cy, cx = rng.uniform(-3, size + 3, 2)
        radius = rng.uniform(*r)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return labels


def disc(labels, cy, cx, radius, value):
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = value


# ------------------------------------------------------------------------------ border


@pytest.mark.parametrize("seed", range(4))
def test_separation_border_is_the_cell_pixels_touching_another_cell(seed):
    labels = random_cells(np.random.default_rng(seed), 40, 12)
    border = separation_border(labels)
    assert border.dtype == bool and border.shape == labels.shape
    np.testing.assert_array_equal(border, border_by_loops(labels))
    assert border.any()  # the random discs do touch


@pytest.mark.parametrize("seed", range(4))
def test_separated_mask_never_joins_two_cells(seed):
    labels = random_cells(np.random.default_rng(seed), 64, 20)
    mask = separated_mask(labels)
    assert mask.dtype == np.int64
    merged, _ = ndi.label(labels > 0, structure=np.ones((3, 3)))
    split, _ = ndi.label(mask, structure=np.ones((3, 3)))  # 8-connected
    # the merged mask has components spanning two cells; the separated one never does
    spans = [len(np.unique(labels[(split == k)])) for k in range(1, split.max() + 1)]
    assert max(spans) == 1
    assert max(len(np.unique(labels[merged == k])) for k in range(1, merged.max() + 1)) > 1


def test_separation_border_of_two_touching_squares_is_two_pixels_wide():
    labels = np.zeros((10, 12), np.int32)
    labels[2:8, 1:6] = 1
    labels[2:8, 6:11] = 2
    border = separation_border(labels)
    assert border[2:8, 5].all() and border[2:8, 6].all()
    assert border.sum() == 12
    # one background pixel between them: no border, they are already apart
    labels[:, 6] = 0
    assert not separation_border(labels).any()


# ------------------------------------------------------------------------------ class balance


@pytest.mark.parametrize("seed", range(3))
def test_class_balance_weights_average_one_and_equal_class_totals(seed):
    rng = np.random.default_rng(seed)
    mask = (rng.random((30, 40)) < rng.uniform(0.1, 0.9)).astype(np.int64)
    wc = class_balance_weights(mask)
    assert wc.dtype == np.float32 and wc.shape == mask.shape
    assert wc.mean() == pytest.approx(1.0, rel=1e-6)
    assert wc[mask == 0].sum() == pytest.approx(wc[mask == 1].sum(), rel=1e-5)
    np.testing.assert_allclose(wc, balanced_reference(mask), rtol=1e-6)


def test_class_balance_weights_of_a_single_class_are_one():
    np.testing.assert_array_equal(class_balance_weights(np.zeros((5, 5), np.int64)), 1.0)
    np.testing.assert_array_equal(class_balance_weights(np.ones((5, 5), np.int64)), 1.0)


def test_class_balance_weights_rejects_floats_and_negatives():
    with pytest.raises(TypeError, match="integer class indices"):
        class_balance_weights(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=">= 0"):
        class_balance_weights(-np.ones((4, 4), np.int64))


# ------------------------------------------------------------------------------ the weight map


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("class_weights", [None, "balanced", {0: 0.5, 1: 2.0}])
def test_weight_map_matches_the_full_image_reference(seed, class_weights):
    labels = random_cells(np.random.default_rng(seed), 72, 25)
    w = unet_weight_map(labels, class_weights=class_weights)
    ref = reference_weight_map(labels, class_weights=class_weights)
    assert w.dtype == np.float32 and w.shape == labels.shape
    bound = 10.0 * math.exp(-border_cutoff(10.0, 5.0, 1e-3) ** 2 / 50.0)
    assert bound <= 1e-3
    np.testing.assert_allclose(w, ref, rtol=0, atol=bound + 1e-5)  # + float32 rounding


@pytest.mark.parametrize("tol,sigma", [(0.5, 5.0), (2.0, 5.0), (0.05, 3.0), (1.0, 8.0)])
def test_cut_off_error_stays_within_the_stated_bound(tol, sigma):
    labels = random_cells(np.random.default_rng(7), 96, 30, r=(3.0, 7.0))
    D = border_cutoff(10.0, sigma, tol)
    bound = 10.0 * math.exp(-(D**2) / (2 * sigma**2))
    assert bound <= tol
    w = unet_weight_map(labels, sigma=sigma, class_weights=None, tol=tol)
    err = np.abs(w - reference_weight_map(labels, sigma=sigma))
    assert err.max() <= bound + 1e-5
    if tol >= 0.5:
        assert err.max() > 0  # the cut-off is really in effect: the bound is not vacuous


def test_border_cutoff_is_the_smallest_distance_that_meets_tol():
    for w0, sigma, tol in [(10, 5, 1e-3), (10, 5, 1e-6), (3, 2, 0.1), (50, 10, 1e-2)]:
        D = border_cutoff(w0, sigma, tol)
        assert w0 * math.exp(-(D**2) / (2 * sigma**2)) <= tol
        assert w0 * math.exp(-((D - 1) ** 2) / (2 * sigma**2)) > tol
    assert border_cutoff(10, 5, 1e-3) == 22
    assert border_cutoff(1.0, 5, 2.0) == 0


@pytest.mark.parametrize("gap", [4, 6, 10, 16])
@pytest.mark.parametrize("sigma", [3.0, 5.0])
def test_value_midway_between_two_discs_is_analytic(gap, sigma):
    # two discs of radius 8 on row 30; their facing edge pixels are `gap` columns apart, so
    # the pixel midway has d1 = d2 = gap / 2 and w = w_c + w0 exp(-gap^2 / (2 sigma^2))
    labels = np.zeros((61, 80), np.int32)
    disc(labels, 30, 20, 8, 3)
    disc(labels, 30, 20 + 8 + gap + 8, 8, 9)
    mid = 20 + 8 + gap // 2
    w = unet_weight_map(labels, w0=10.0, sigma=sigma, class_weights=None)
    expected = 1.0 + 10.0 * math.exp(-(gap**2) / (2 * sigma**2))
    assert w[30, mid] == pytest.approx(expected, abs=1e-5)
    # with class balance the same border term sits on the background's w_c
    wb = unet_weight_map(labels, w0=10.0, sigma=sigma)
    n_bg = (labels == 0).sum()
    wc_bg = labels.size / (2 * n_bg)
    assert wb[30, mid] == pytest.approx(wc_bg + expected - 1.0, rel=1e-5)


def test_no_cell_and_one_cell_give_w_c_not_zeros():
    empty = np.zeros((32, 32), np.int32)
    np.testing.assert_array_equal(unet_weight_map(empty), 1.0)
    np.testing.assert_array_equal(unet_weight_map(empty, class_weights=None), 1.0)
    one = np.zeros((32, 32), np.int32)
    disc(one, 16, 16, 6, 5)
    w = unet_weight_map(one)
    np.testing.assert_allclose(w, class_balance_weights(one > 0), rtol=1e-6)
    assert w.min() > 0
    w = unet_weight_map(one, class_weights={0: 1.0, 1: 3.0})
    np.testing.assert_array_equal(w, np.where(one > 0, 3.0, 1.0))


@pytest.mark.parametrize("seed", range(3))
def test_border_term_lives_on_background_only(seed):
    labels = random_cells(np.random.default_rng(seed), 64, 20)
    cells = separated_mask(labels)
    wc = class_balance_weights(cells)
    w = unet_weight_map(labels)
    np.testing.assert_array_equal(w[cells == 1], wc[cells == 1])
    assert np.all(w >= wc)
    assert np.all(w - wc <= 10.0 + 1e-5)


def test_carved_border_between_two_squares_gets_the_border_term():
    labels = np.zeros((10, 14), np.int32)
    labels[2:8, 1:7] = 1
    labels[2:8, 7:13] = 2
    w = unet_weight_map(labels, class_weights=None)
    # columns 6 and 7 become background: from column 6, cell 1 is 1 px away, cell 2 is 2 px
    expected = 1.0 + 10.0 * math.exp(-(1 + 2) ** 2 / 50.0)
    np.testing.assert_allclose(w[2:8, 6], expected, rtol=1e-6)
    np.testing.assert_allclose(w[2:8, 7], expected, rtol=1e-6)
    np.testing.assert_array_equal(w[2:8, 1:6], 1.0)


def test_d1_minus_d2_would_be_wrong_far_from_cells():
    # the popular bug: (d1 - d2) is 0 on the whole mid-line between two cells, however far
    # they are, so the term would be w0 there; (d1 + d2) makes it vanish
    labels = np.zeros((40, 200), np.int32)
    disc(labels, 20, 10, 6, 1)
    disc(labels, 20, 190, 6, 2)
    w = unet_weight_map(labels, class_weights=None)
    assert w[20, 100] == pytest.approx(1.0, abs=1e-6)


def test_ids_and_their_order_do_not_matter():
    rng = np.random.default_rng(3)
    labels = random_cells(rng, 64, 20)
    ids = np.unique(labels)[1:]
    lut = np.zeros(labels.max() + 1, np.int64)
    lut[ids] = rng.permutation(len(ids)) * 1000 + 1
    np.testing.assert_allclose(unet_weight_map(lut[labels]), unet_weight_map(labels), atol=1e-6)


def test_distances_are_computed_in_windows_not_on_the_full_image(monkeypatch):
    calls = []
    real = ndi.distance_transform_edt

    def spy(image, *args, **kwargs):
        calls.append(image.size)
        return real(image, *args, **kwargs)

    monkeypatch.setattr(W.ndi, "distance_transform_edt", spy)
    labels = random_cells(np.random.default_rng(0), 256, 150, r=(6.0, 9.0))
    n_cells = len(np.unique(separated_mask(labels) * labels)) - 1
    unet_weight_map(labels)
    assert len(calls) == n_cells
    # each window is the cell's box grown by 22 px: far smaller than the 256 x 256 image
    assert max(calls) <= (2 * 9 + 1 + 2 * 22) ** 2
    assert sum(calls) < n_cells * labels.size / 10


def test_accepts_torch_tensors_and_any_integer_dtype():
    torch = pytest.importorskip("torch")
    labels = random_cells(np.random.default_rng(1), 48, 12)
    expected = unet_weight_map(labels)
    np.testing.assert_array_equal(unet_weight_map(torch.from_numpy(labels)), expected)
    np.testing.assert_array_equal(unet_weight_map(labels.astype(np.uint16)), expected)


# ------------------------------------------------------------------------------ bad input


def test_bad_input_gets_errors_that_say_what_to_pass():
    labels = random_cells(np.random.default_rng(0), 32, 8)
    with pytest.raises(TypeError, match="boolean mask.*instances"):
        unet_weight_map(labels > 0)
    with pytest.raises(TypeError, match=r"astype\(np.int32\)"):
        unet_weight_map(labels.astype(np.float32))
    with pytest.raises(TypeError, match="not whole numbers"):
        unet_weight_map(labels + 0.5)
    with pytest.raises(ValueError, match="negative ids"):
        unet_weight_map(labels - 3)
    with pytest.raises(ValueError, match="once per image"):
        unet_weight_map(np.stack([labels, labels]))
    with pytest.raises(ValueError, match="class_weights"):
        unet_weight_map(labels, class_weights="inverse")
    with pytest.raises(ValueError, match="class 1"):
        unet_weight_map(labels, class_weights={0: 1.0})
    with pytest.raises(TypeError, match="class_weights"):
        unet_weight_map(labels, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="sigma"):
        unet_weight_map(labels, sigma=0)
    with pytest.raises(ValueError, match="w0"):
        unet_weight_map(labels, w0=-1)


def test_a_binary_mask_of_several_cells_is_flagged():
    labels = np.zeros((40, 40), np.int64)
    disc(labels, 10, 10, 5, 1)
    disc(labels, 28, 28, 5, 1)
    with pytest.warns(UserWarning, match="binary mask.*scipy.ndimage.label"):
        w = unet_weight_map(labels)
    assert w.shape == labels.shape
    one = np.zeros((40, 40), np.int64)
    disc(one, 20, 20, 6, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unet_weight_map(one)  # a single cell with id 1 is fine


# ------------------------------------------------------------------------------ properties


@st.composite
def label_images(draw):
    h = draw(st.integers(4, 28))
    w = draw(st.integers(4, 28))
    labels = np.zeros((h, w), np.int32)
    for _ in range(draw(st.integers(0, 6))):
        r0 = draw(st.integers(0, h - 1))
        c0 = draw(st.integers(0, w - 1))
        r1 = draw(st.integers(r0 + 1, h))
        c1 = draw(st.integers(c0 + 1, w))
        labels[r0:r1, c0:c1] = draw(st.integers(1, 50))
    return labels


@settings(max_examples=80, deadline=None)
@given(labels=label_images(), w0=st.floats(0.0, 30.0), sigma=st.floats(0.5, 12.0),
       balanced=st.booleans())
def test_properties_on_random_label_images(labels, w0, sigma, balanced):
    cw = "balanced" if balanced else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one id in two pieces is a fine input here
        w = unet_weight_map(labels, w0=w0, sigma=sigma, class_weights=cw)
        mask = separated_mask(labels)
    wc = class_balance_weights(mask) if balanced else np.ones(labels.shape, np.float32)
    assert w.dtype == np.float32 and w.shape == labels.shape
    assert np.all(np.isfinite(w))
    assert np.all(w >= wc)
    np.testing.assert_array_equal(w[mask == 1], wc[mask == 1])
    assert np.all(w - wc <= w0 + 1e-4)
    ref = reference_weight_map(labels, w0=w0, sigma=sigma, class_weights=cw)
    bound = w0 * math.exp(-border_cutoff(w0, sigma, 1e-3) ** 2 / (2 * sigma**2)) if w0 > 1e-3 else w0
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=bound + 1e-5)
    if len(np.unique(labels[mask == 1])) < 2:
        np.testing.assert_array_equal(w, wc)


# ------------------------------------------------------------------------------ edge sizes and ids


def test_empty_images_give_empty_maps():
    for shape in ((0, 0), (0, 5), (4, 0)):
        for cw in ("balanced", None, {0: 1.0, 1: 2.0}):
            w = unet_weight_map(np.zeros(shape, np.int32), class_weights=cw)
            assert w.shape == shape and w.dtype == np.float32


@pytest.mark.parametrize("huge", [2**31 - 1, 2**40, 2**63 - 1])
def test_huge_ids_give_the_map_of_small_ones(huge):
    labels = random_cells(np.random.default_rng(3), 48, 6).astype(np.int64)
    top = labels.max()
    big = np.where(labels == top, huge, labels)
    np.testing.assert_array_equal(unet_weight_map(big), unet_weight_map(labels))
    unsigned = np.where(labels == top, np.uint64(2**64 - 1), labels.astype(np.uint64))
    np.testing.assert_array_equal(unet_weight_map(unsigned), unet_weight_map(labels))
    mask = np.where(labels > 0, huge, 0)
    np.testing.assert_array_equal(class_balance_weights(mask), class_balance_weights(labels > 0))


def test_relabel_sequential():
    from unet_course.postprocess import relabel_sequential

    labels = np.array([[0, 7, 7], [2**40, 0, 3]])
    np.testing.assert_array_equal(relabel_sequential(labels), [[0, 2, 2], [3, 0, 1]])
    np.testing.assert_array_equal(relabel_sequential(np.array([[5, 9]], np.uint64)), [[1, 2]])
    assert relabel_sequential(np.zeros((0, 3), np.int64)).shape == (0, 3)
    with pytest.raises(ValueError, match="ids >= 0"):
        relabel_sequential(np.array([[-1, 0]]))
    with pytest.raises(TypeError, match="integer ids"):
        relabel_sequential(np.array([[0.5]]))
