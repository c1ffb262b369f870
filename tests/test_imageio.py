"""unet_course.imageio: every bit depth read at its true range, masks, and writing maps."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from unet_course.imageio import (
    MAX_CLASSES,
    guess_mask_kind,
    mask_from_labels,
    normalize_intensity,
    read_image,
    read_mask,
    write_probability,
)


def _save(path, array):
    Image.fromarray(array).save(path)
    return path


def _png16_colour(path, array):
    """A 16-bit-per-channel RGB PNG written by hand: Pillow cannot write one."""
    h, w, c = array.shape
    rows = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    colour_type = {3: 2, 4: 6}[c]
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------------------------
# read_image: value ranges
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_is_read_at_its_true_range_not_clipped(tmp_path, suffix):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 60001, size=(16, 16)).astype(np.uint16)
    raw[0, 0] = 60000
    image = read_image(_save(tmp_path / f"a{suffix}", raw))
    assert image.shape == (1, 16, 16) and image.dtype == np.float32
    assert image.max() == pytest.approx(60000 / 65535, abs=1e-6)
    # through mode "L" every value above 255 would be 1.0; here almost none is
    assert np.mean(image < 1.0) > 0.99
    np.testing.assert_allclose(image[0], raw / 65535.0, atol=1e-6)


def test_big_endian_16bit_tiff(tmp_path):
    raw = np.array([[0, 1000], [30000, 65535]], dtype=">u2")
    image = read_image(_save(tmp_path / "be.tif", raw))
    np.testing.assert_allclose(image[0], raw.astype(np.float64) / 65535.0, atol=1e-7)


def test_8bit_gray_and_1bit(tmp_path):
    raw = np.array([[0, 51], [204, 255]], np.uint8)
    np.testing.assert_allclose(read_image(_save(tmp_path / "g.png", raw))[0], raw / 255.0,
                               atol=1e-7)
    bits = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(read_image(_save(tmp_path / "b.png", bits))[0], bits)


def test_float_tiff_in_unit_range_reads_back_exactly(tmp_path):
    raw = np.random.default_rng(1).random((9, 7)).astype(np.float32)
    image = read_image(_save(tmp_path / "f.tif", raw))
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image[0], raw)


def test_float_tiff_outside_unit_range_is_minmax_normalised(tmp_path):
    raw = np.linspace(0, 1000, 20, dtype=np.float32).reshape(4, 5)
    image = read_image(_save(tmp_path / "f.tif", raw))
    assert image.min() == 0.0 and image.max() == 1.0
    np.testing.assert_allclose(image[0], raw / 1000.0, atol=1e-6)


def test_constant_float_tiff_outside_unit_range_gives_zeros(tmp_path):
    image = read_image(_save(tmp_path / "c.tif", np.full((3, 3), 7.5, np.float32)))
    np.testing.assert_array_equal(image, 0.0)


def test_non_finite_float_pixels_are_refused(tmp_path):
    raw = np.zeros((3, 3), np.float32)
    raw[1, 1] = np.nan
    path = _save(tmp_path / "nan.tif", raw)
    with pytest.raises(ValueError, match="non-finite"):
        read_image(path)


# ----------------------------------------------------------------------------------------------
# read_image: channels
# ----------------------------------------------------------------------------------------------


def test_rgb_to_gray_uses_luma_weights(tmp_path):
    raw = np.zeros((2, 3, 3), np.uint8)
    raw[0, 0] = [255, 0, 0]
    raw[0, 1] = [0, 255, 0]
    raw[0, 2] = [0, 0, 255]
    raw[1] = [10, 200, 40]
    path = _save(tmp_path / "c.png", raw)
    rgb = read_image(path)
    assert rgb.shape == (3, 2, 3)
    np.testing.assert_allclose(rgb, raw.transpose(2, 0, 1) / 255.0, atol=1e-7)
    gray = read_image(path, channels=1)
    assert gray.shape == (1, 2, 3)
    np.testing.assert_allclose(gray[0, 0], [0.299, 0.587, 0.114], atol=1e-6)
    np.testing.assert_allclose(gray[0, 1], (0.299 * 10 + 0.587 * 200 + 0.114 * 40) / 255,
                               atol=1e-6)


def test_gray_to_three_channels_repeats(tmp_path):
    raw = np.array([[0, 128], [255, 7]], np.uint8)
    image = read_image(_save(tmp_path / "g.png", raw), channels=3)
    assert image.shape == (3, 2, 2)
    np.testing.assert_array_equal(image[0], image[1])
    np.testing.assert_array_equal(image[0], image[2])


def test_alpha_is_dropped(tmp_path):
    raw = np.zeros((2, 2, 4), np.uint8)
    raw[..., 0] = 255
    raw[..., 3] = 0  # fully transparent: the colour is still the colour
    image = read_image(_save(tmp_path / "a.png", raw))
    assert image.shape == (3, 2, 2)
    np.testing.assert_array_equal(image[0], 1.0)


def test_palette_gray_gives_one_channel_and_colour_three(tmp_path):
    gray = Image.new("P", (2, 1))
    gray.putpalette([0, 0, 0, 200, 200, 200])
    gray.putpixel((1, 0), 1)
    gray.save(tmp_path / "pg.png")
    image = read_image(tmp_path / "pg.png")
    assert image.shape == (1, 1, 2)
    np.testing.assert_allclose(image[0, 0], [0.0, 200 / 255], atol=1e-7)

    colour = Image.new("P", (2, 1))
    colour.putpalette([0, 0, 0, 255, 0, 0])
    colour.putpixel((1, 0), 1)
    colour.save(tmp_path / "pc.png")
    image = read_image(tmp_path / "pc.png")
    assert image.shape == (3, 1, 2)
    np.testing.assert_allclose(image[:, 0, 1], [1.0, 0.0, 0.0])


def test_jpeg_reads(tmp_path):
    image = read_image(_save(tmp_path / "a.jpg", np.full((8, 8, 3), 100, np.uint8)), channels=1)
    assert image.shape == (1, 8, 8)
    assert abs(float(image.mean()) - 100 / 255) < 0.02


def test_16bit_colour_png_keeps_its_range_with_8bit_precision(tmp_path):
    raw = np.zeros((1, 2, 3), np.uint16)
    raw[0, 0] = [60000, 300, 65535]
    image = read_image(_png16_colour(tmp_path / "c16.png", raw))
    # Pillow keeps the high byte: 60000 -> 234 -> 234 / 255
    np.testing.assert_allclose(image[:, 0, 0], [234 / 255, 1 / 255, 1.0], atol=1e-6)


def test_stack_needs_a_page(tmp_path):
    pages = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (10, 20, 30)]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(ValueError, match="3 pages"):
        read_image(path)
    np.testing.assert_allclose(read_image(path, page=1), 20 / 255, atol=1e-7)
    with pytest.raises(ValueError, match="page must be"):
        read_image(path, page=3)


# ----------------------------------------------------------------------------------------------
# read_image: errors
# ----------------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(path)


def test_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        read_image(tmp_path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"cannot read .*bad\.png as an image \("):
        read_image(path)


def test_truncated_file(tmp_path):
    path = _save(tmp_path / "t.png", np.random.default_rng(0).integers(0, 255, (64, 64),
                                                                         dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read"):
        read_image(path)


def test_bad_channels(tmp_path):
    path = _save(tmp_path / "g.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="channels"):
        read_image(path, channels=2)


# ----------------------------------------------------------------------------------------------
# normalize_intensity
# ----------------------------------------------------------------------------------------------


def test_normalize_minmax_zscore_none():
    image = np.array([[[0.1, 0.2], [0.3, 0.5]]], np.float32)
    minmax = normalize_intensity(image)
    assert minmax.dtype == np.float32 and minmax.shape == image.shape
    np.testing.assert_allclose(minmax[0], [[0, 0.25], [0.5, 1.0]], atol=1e-6)
    z = normalize_intensity(image, "zscore")
    assert abs(float(z.mean())) < 1e-6 and abs(float(z.std()) - 1) < 1e-5
    np.testing.assert_array_equal(normalize_intensity(image, "none"), image)


@pytest.mark.parametrize("mode", ["minmax", "zscore"])
def test_normalize_constant_image_gives_zeros(mode):
    out = normalize_intensity(np.full((1, 3, 3), 0.4, np.float32), mode)
    np.testing.assert_array_equal(out, 0.0)


def test_normalize_bad_mode_and_nan():
    with pytest.raises(ValueError, match="minmax"):
        normalize_intensity(np.zeros((2, 2)), "percentile")
    with pytest.raises(ValueError, match="NaN"):
        normalize_intensity(np.array([0.0, np.nan]))


# ----------------------------------------------------------------------------------------------
# read_mask
# ----------------------------------------------------------------------------------------------


def test_read_mask_keeps_raw_values(tmp_path):
    m8 = np.array([[0, 255], [255, 0]], np.uint8)
    out = read_mask(_save(tmp_path / "m.png", m8))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, m8)
    m16 = np.array([[0, 300], [40000, 2]], np.uint16)
    out = read_mask(_save(tmp_path / "m16.png", m16))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, m16)
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "m16.tif", m16)), m16)


def test_read_mask_palette_gives_indices(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    for x in range(3):
        im.putpixel((x, 0), x)
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), [[0, 1, 2]])


def test_read_mask_rgb_with_equal_channels_is_accepted(tmp_path):
    gray = np.array([[0, 1], [2, 0]], np.uint8)
    out = read_mask(_save(tmp_path / "rgb.png", np.repeat(gray[..., None], 3, axis=2)))
    np.testing.assert_array_equal(out, gray)


def test_read_mask_colour_coded_is_refused(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = [255, 0, 0]
    path = _save(tmp_path / "c.png", rgb)
    with pytest.raises(ValueError, match="colour"):
        read_mask(path)


def test_read_mask_16bit_colour_is_refused(tmp_path):
    raw = np.repeat(np.array([[[0], [300]]], np.uint16), 3, axis=2)
    path = _png16_colour(tmp_path / "c16.png", raw)
    with pytest.raises(ValueError, match="16-bit colour"):
        read_mask(path)


def test_read_mask_float_labels(tmp_path):
    ids = np.array([[0, 3], [70000, 3]], np.float32)
    out = read_mask(_save(tmp_path / "f.tif", ids))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ids)
    path = _save(tmp_path / "g.tif", np.array([[0.5, 1.0]], np.float32))
    with pytest.raises(ValueError, match="whole numbers"):
        read_mask(path)


def test_read_mask_jpeg_is_refused(tmp_path):
    path = _save(tmp_path / "m.jpg", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="JPEG"):
        read_mask(path)


def test_read_mask_missing_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="m.png"):
        read_mask(tmp_path / "m.png")
    with pytest.raises(ValueError, match="folder"):
        read_mask(tmp_path)


# ----------------------------------------------------------------------------------------------
# mask_from_labels and the "auto" rule
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", [1, 255])
def test_binary_masks(cell):
    raw = np.array([[0, cell], [cell, 0]], np.uint8)
    mask, ids, kind = mask_from_labels(raw)
    assert kind == "binary" and ids is None
    assert mask.dtype == np.int64
    np.testing.assert_array_equal(mask, [[0, 1], [1, 0]])


def test_class_masks():
    raw = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    mask, ids, kind = mask_from_labels(raw)
    assert kind == "classes" and ids is None and mask.dtype == np.int64
    np.testing.assert_array_equal(mask, raw)


def _two_touching_squares(dtype=np.uint16):
    raw = np.zeros((8, 12), dtype)
    raw[2:6, 2:6] = 1000
    raw[2:6, 6:10] = 40000
    return raw


def test_16bit_instances_get_a_background_line_where_they_touch():
    raw = _two_touching_squares()
    mask, ids, kind = mask_from_labels(raw)
    assert kind == "instances"
    assert mask.dtype == np.int64 and ids.dtype == np.int32
    assert set(np.unique(ids).tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(ids[2:6, 2:6], 1)
    np.testing.assert_array_equal(ids[2:6, 6:10], 2)
    # the two columns where the squares meet are background in the mask
    np.testing.assert_array_equal(mask[:, 5:7], 0)
    np.testing.assert_array_equal(mask[2:6, 2:5], 1)
    np.testing.assert_array_equal(mask[2:6, 7:10], 1)
    assert mask[ids == 0].max() == 0


def test_single_id_over_several_regions_does_not_warn():
    raw = np.zeros((5, 5), np.uint16)
    raw[0, 0] = raw[4, 4] = 9
    mask, ids, kind = mask_from_labels(raw, kind="instances")
    assert ids.max() == 1 and mask.sum() == 2


@pytest.mark.parametrize(
    "raw, kind",
    [
        (np.array([[0, 1]], np.uint8), "binary"),
        (np.array([[0, 255]], np.uint8), "binary"),
        (np.array([[0, 65535]], np.uint16), "binary"),
        (np.array([[True, False]]), "binary"),
        (np.array([[0, 1, 2, 3]], np.uint16), "instances"),
        (np.array([[0, 1, 2, 3]], np.int64), "instances"),
        (np.array([[0, 1, 2, 3]], np.uint8), "classes"),
        (np.array([[0, MAX_CLASSES - 1]], np.uint8), "classes"),
        (np.arange(40, dtype=np.uint8).reshape(5, 8), "instances"),
    ],
)
def test_auto_rule(raw, kind):
    assert guess_mask_kind(raw) == kind
    assert mask_from_labels(raw)[2] == kind


def test_auto_is_decided_over_several_masks():
    few = np.array([[0, 1, 2]], np.uint8)
    many = np.arange(40, dtype=np.uint8).reshape(5, 8)
    assert guess_mask_kind(few) == "classes"
    assert guess_mask_kind([few, many]) == "instances"


def test_ambiguous_8bit_mask_asks_for_kind():
    raw = np.array([[0, 128, 255]], np.uint8)
    with pytest.raises(ValueError, match="kind="):
        mask_from_labels(raw)
    assert mask_from_labels(raw, kind="instances")[2] == "instances"


def test_explicit_kind_is_checked():
    with pytest.raises(ValueError, match="binary mask"):
        mask_from_labels(np.array([[0, 1, 2]], np.uint8), kind="binary")
    with pytest.raises(ValueError, match="class masks"):
        mask_from_labels(np.array([[0, 40]], np.uint8), kind="classes")
    with pytest.raises(ValueError, match="kind must be"):
        mask_from_labels(np.zeros((2, 2), np.uint8), kind="semantic")


def test_bad_label_arrays():
    with pytest.raises(TypeError, match="integer"):
        mask_from_labels(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=">= 0"):
        mask_from_labels(np.array([[0, -1]]))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_from_labels(np.zeros((2, 2, 2), np.uint8))


def test_instance_ids_are_relabelled_consecutively():
    raw = np.array([[0, 7, 7, 0, 300, 0, 65000]], np.uint16)
    _, ids, _ = mask_from_labels(raw, kind="instances")
    np.testing.assert_array_equal(ids, [[0, 1, 1, 0, 2, 0, 3]])


# ----------------------------------------------------------------------------------------------
# write_probability
# ----------------------------------------------------------------------------------------------


def _probabilities():
    prob = np.random.default_rng(3).random((13, 17)).astype(np.float32)
    prob[0, :3] = [0.0, 1.0, 0.5]
    return prob


def test_write_probability_png_round_trip(tmp_path):
    prob = _probabilities()
    path = write_probability(tmp_path / "p.png", prob)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode in ("I;16", "I")
    back = read_image(path)[0]
    assert np.abs(back - prob).max() <= 1 / 65535


def test_write_probability_tiff_is_exact(tmp_path):
    prob = _probabilities()
    for name in ("p.tif", "p.TIFF"):
        back = read_image(write_probability(tmp_path / name, prob))[0]
        np.testing.assert_array_equal(back, prob)


def test_write_probability_errors(tmp_path):
    prob = _probabilities()
    with pytest.raises(ValueError, match=r"\.png.*\.tif"):
        write_probability(tmp_path / "p.jpg", prob)
    with pytest.raises(ValueError, match="is a folder"):
        write_probability(tmp_path, prob)
    with pytest.raises(ValueError, match="does not exist"):
        write_probability(tmp_path / "missing" / "p.png", prob)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_probability(tmp_path / "p.png", prob * 3)
    with pytest.raises(ValueError, match="NaN"):
        write_probability(tmp_path / "p.png", np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        write_probability(tmp_path / "p.png", np.zeros((2, 2, 2)))
