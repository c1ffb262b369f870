"""What one output pixel of the U-Net sees, derived from the layers' rules and measured.

The window is derived here in one dimension from the rules of each operation alone (a valid
3x3 conv reads k..k+2, a 2x2 pool reads 2k..2k+1, a 2x2 up-conv reads k // 2, a copy is
centre-cropped), independently of the model's code, and compared with the support of the
gradient of one output logit with respect to the input of the real network.
"""

import pytest
import torch

from unet_course import UNet


def window(n: int, depth: int, i: int) -> tuple[int, int]:
    """First and last input index that output index ``i`` depends on (valid padding)."""
    # Forward sizes of the contracting path's last map at each level.
    skip, s = [], n
    for level in range(depth + 1):
        s = (s if level == 0 else s // 2) - 4
        skip.append(s)
    up_sizes, s = [], skip[-1]
    for level in reversed(range(depth)):
        up_sizes.append((level, 2 * s))
        s = 2 * s - 4

    def down_path(level, lo, hi):
        """Input indices read by indices lo..hi of the contracting map at ``level``."""
        for _ in range(level):
            lo, hi = 2 * lo, 2 * (hi + 4) + 1       # double conv, then the pool before it
        return lo, hi + 4                            # the first double conv

    lo, hi = i, i                                    # the 1x1 head reads one pixel
    first, last = n, -1
    for level, up in reversed(up_sizes):             # from the top level down
        hi += 4                                      # the double conv after the concatenation
        crop = (skip[level] - up) // 2
        a, b = down_path(level, lo + crop, hi + crop)  # the cropped copy
        first, last = min(first, a), max(last, b)
        lo, hi = lo // 2, hi // 2                    # the up-conv: one parent per pixel
    a, b = down_path(depth, lo, hi)                  # the bottom of the U
    return min(first, a), max(last, b)


def gradient_support(model, n, pixels, samples=12, seed=0):
    """Union over random inputs of where d logit[pixel] / d input is non-zero, per pixel."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(pixels) * samples, 1, n, n, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    y = model(x)
    rows = torch.tensor([r for r, _ in pixels]).repeat_interleave(samples)
    cols = torch.tensor([c for _, c in pixels]).repeat_interleave(samples)
    y[torch.arange(len(x)), 0, rows, cols].sum().backward()
    return (x.grad[:, 0] != 0).reshape(len(pixels), samples, n, n).any(1)


# Four channels or more: in a narrower net some paths are dead (ReLU off) for every input, and
# the gradient then misses a few pixels of the window; it never reaches outside it.
@pytest.mark.parametrize("depth, base_channels, extra", [(4, 4, 2), (3, 6, 2), (2, 8, 3)])
def test_gradient_is_nonzero_exactly_inside_the_derived_window(depth, base_channels, extra):
    torch.manual_seed(0)
    model = UNet(depth=depth, base_channels=base_channels).double().eval()
    n = model.valid_input_size(1) + extra * 2**depth
    out = model.output_size(n)
    period = 2**depth
    # Pixels at different phases of the pooling grid, as rows and columns.
    pixels = [(period + 3, 2 * period - 1), (period // 2, period + 1)]
    assert all(max(p) < out for p in pixels)
    support = gradient_support(model, n, pixels)
    for (r, c), seen in zip(pixels, support):
        (r0, r1), (c0, c1) = window(n, depth, r), window(n, depth, c)
        expected = torch.zeros(n, n, dtype=torch.bool)
        expected[r0:r1 + 1, c0:c1 + 1] = True
        assert torch.equal(seen, expected), (r, c)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_every_output_pixel_sees_the_margin_the_sizes_predict(depth):
    """n - output_size(n) = 2 * margin, and every pixel i sees at least [i, i + 2 * margin]."""
    model = UNet(depth=depth, base_channels=1)
    n = model.valid_input_size(1) + 4 * 2**depth
    out = model.output_size(n)
    margin2 = n - out
    windows = [window(n, depth, i) for i in range(out)]
    assert max(lo - i for i, (lo, _) in enumerate(windows)) == 0
    assert min(hi - i for i, (_, hi) in enumerate(windows)) == margin2
    # The margin is the same for every valid size: 2 * 92 = 184 pixels for the paper's depth.
    assert all(m - model.output_size(m) == margin2
               for m in range(n, n + 5 * 2**depth) if model._sizes(m) is not None)
    if depth == 4:
        assert margin2 == 184
        assert {hi - lo + 1 for lo, hi in windows} == {188, 204}


def test_the_window_does_not_depend_on_the_width():
    pixels = [(9, 4)]
    supports = []
    for base in (4, 16):
        torch.manual_seed(1)
        model = UNet(depth=2, base_channels=base).double().eval()
        supports.append(gradient_support(model, 76, pixels)[0])
    assert torch.equal(supports[0], supports[1])
    (r0, r1), (c0, c1) = window(76, 2, 9), window(76, 2, 4)
    assert supports[0].sum() == (r1 - r0 + 1) * (c1 - c0 + 1)
