"""unet_course.folders.ImageFolderDataset: pairing, reading, kinds and the error messages."""

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from unet_course.folders import ImageFolderDataset


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _gray(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _binary(h, w):
    mask = np.zeros((h, w), np.uint8)
    mask[: h // 2] = 255
    return mask


def _folders(tmp_path):
    return tmp_path / "images", tmp_path / "masks"


def test_pairs_by_stem_with_sizes_that_differ(tmp_path):
    images, masks = _folders(tmp_path)
    _save(images / "img10.png", _gray(6, 8))
    _save(images / "img2.png", _gray(5, 7))
    _save(images / "img3.tif", _gray(4, 4))
    _save(masks / "img10.png", _binary(6, 8))
    _save(masks / "img2.tif", _binary(5, 7))
    _save(masks / "img3_mask.png", _binary(4, 4))
    _save(masks / "unused.png", _binary(2, 2))  # a mask without an image is ignored
    ds = ImageFolderDataset(images, masks)
    assert isinstance(ds, Sequence) and len(ds) == 3
    assert ds.names == ["img2.png", "img3.tif", "img10.png"]  # natural order
    assert [m.name for m in ds.mask_paths] == ["img2.tif", "img3_mask.png", "img10.png"]
    assert [im.shape for im in ds.images] == [(5, 7), (4, 4), (6, 8)]
    assert ds.kind == "binary" and ds.num_classes == 2 and ds.instances is None
    image, mask = ds[0]
    assert image.dtype == np.float32 and mask.dtype == np.int64
    assert image.min() == 0.0 and image.max() == 1.0  # minmax normalised
    np.testing.assert_array_equal(mask, _binary(5, 7) > 0)
    assert len(ds[1:]) == 2
    assert repr(ds).startswith("ImageFolderDataset(") and "3 images" in repr(ds)
    assert len(repr(ds)) < 200


def test_three_channels_and_no_normalisation(tmp_path):
    images, masks = _folders(tmp_path)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    _save(images / "a.png", rgb)
    _save(masks / "a.png", _binary(4, 5))
    ds = ImageFolderDataset(images, masks, channels=3, normalize="none")
    assert ds.images[0].shape == (3, 4, 5)
    np.testing.assert_allclose(ds.images[0][0], 200 / 255, atol=1e-7)
    gray = ImageFolderDataset(images, masks, channels=1, normalize="none")
    np.testing.assert_allclose(gray.images[0], 0.299 * 200 / 255, atol=1e-6)


def test_16bit_image_keeps_its_range_without_normalisation(tmp_path):
    images, masks = _folders(tmp_path)
    raw = np.full((4, 4), 60000, np.uint16)
    raw[0, 0] = 0
    _save(images / "a.png", raw)
    _save(masks / "a.png", _binary(4, 4))
    ds = ImageFolderDataset(images, masks, normalize="none")
    assert ds.images[0].max() == pytest.approx(60000 / 65535, abs=1e-6)


def test_instance_masks(tmp_path):
    images, masks = _folders(tmp_path)
    ids = np.zeros((8, 12), np.uint16)
    ids[2:6, 2:6] = 5
    ids[2:6, 6:10] = 900
    _save(images / "a.png", _gray(8, 12))
    _save(masks / "a.png", ids)
    ds = ImageFolderDataset(images, masks)
    assert ds.kind == "instances" and ds.num_classes == 2
    assert ds.instances[0].dtype == np.int32 and ds.instances[0].max() == 2
    np.testing.assert_array_equal(ds.masks[0][:, 5:7], 0)  # the touching line is background


def test_class_masks_give_num_classes(tmp_path):
    images, masks = _folders(tmp_path)
    for k, top in enumerate((1, 2)):
        mask = np.zeros((4, 4), np.uint8)
        mask[0, : top + 1] = np.arange(top + 1)
        _save(images / f"{k}.png", _gray(4, 4, k))
        _save(masks / f"{k}.png", mask)
    ds = ImageFolderDataset(images, masks)
    assert ds.kind == "classes" and ds.num_classes == 3


def test_auto_kind_is_one_for_the_whole_folder(tmp_path):
    images, masks = _folders(tmp_path)
    _save(images / "a.png", _gray(5, 8))
    _save(images / "b.png", _gray(5, 8, 1))
    _save(masks / "a.png", np.arange(40, dtype=np.uint8).reshape(5, 8))  # 40 ids
    few = np.zeros((5, 8), np.uint8)
    few[0, :3] = [0, 1, 2]
    _save(masks / "b.png", few)  # alone this would read as classes
    ds = ImageFolderDataset(images, masks)
    assert ds.kind == "instances" and len(ds.instances) == 2


def test_masks_in_the_image_folder(tmp_path):
    folder = tmp_path / "data"
    _save(folder / "a.png", _gray(4, 4))
    _save(folder / "a_mask.png", _binary(4, 4))
    ds = ImageFolderDataset(folder, folder)
    assert ds.names == ["a.png"]


def test_works_with_tile_dataset(tmp_path):
    from unet_course.data import TileDataset

    images, masks = _folders(tmp_path)
    _save(images / "a.png", _gray(12, 12))
    _save(masks / "a.png", _binary(12, 12))
    ds = ImageFolderDataset(images, masks)
    tiles = TileDataset(ds.images, ds.masks, input_size=8, output_size=4, length=2)
    image, mask = tiles[0]
    assert tuple(image.shape) == (1, 8, 8) and tuple(mask.shape) == (4, 4)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


def test_images_without_masks_are_named(tmp_path):
    images, masks = _folders(tmp_path)
    for name in ("a", "b", "c", "d"):
        _save(images / f"{name}.png", _gray(4, 4))
    _save(masks / "z.png", _binary(4, 4))
    with pytest.raises(FileNotFoundError) as info:
        ImageFolderDataset(images, masks)
    message = str(info.value)
    assert "4 of 4 images" in message and "a.png, b.png, c.png ..." in message
    assert "d.png" not in message.split("...")[0]
    assert str(masks) in message and "a_mask.png" in message


def test_mask_of_another_size_names_both_files(tmp_path):
    images, masks = _folders(tmp_path)
    _save(images / "a.png", _gray(4, 6))
    _save(masks / "a.png", _binary(4, 5))
    with pytest.raises(ValueError, match=r"masks.a\.png is 5x4 pixels .*images.a\.png is 6x4"):
        ImageFolderDataset(images, masks)


def test_empty_and_missing_folders(tmp_path):
    images, masks = _folders(tmp_path)
    images.mkdir()
    masks.mkdir()
    (images / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no images in"):
        ImageFolderDataset(images, masks)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nowhere", masks)
    with pytest.raises(ValueError, match="is a file"):
        ImageFolderDataset(images / "notes.txt", masks)


def test_two_candidate_masks_are_refused(tmp_path):
    images, masks = _folders(tmp_path)
    _save(images / "a.png", _gray(4, 4))
    _save(masks / "a.png", _binary(4, 4))
    _save(masks / "a_mask.tif", _binary(4, 4))
    with pytest.raises(ValueError, match="2 possible masks"):
        ImageFolderDataset(images, masks)


def test_jpeg_mask_is_refused(tmp_path):
    images, masks = _folders(tmp_path)
    _save(images / "a.png", _gray(4, 4))
    _save(masks / "a.jpg", _binary(4, 4))
    with pytest.raises(ValueError, match="JPEG"):
        ImageFolderDataset(images, masks)


def test_bad_mask_values_name_the_file(tmp_path):
    images, masks = _folders(tmp_path)
    _save(images / "a.png", _gray(4, 4))
    _save(masks / "a.png", np.array([[0, 128, 255, 0]] * 4, np.uint8))
    with pytest.raises(ValueError, match="kind="):
        ImageFolderDataset(images, masks)
    with pytest.raises(ValueError, match=r"a\.png: a binary mask"):
        ImageFolderDataset(images, masks, mask_kind="binary")


def test_bad_arguments(tmp_path):
    images, masks = _folders(tmp_path)
    with pytest.raises(ValueError, match="channels"):
        ImageFolderDataset(images, masks, channels=2)
    with pytest.raises(ValueError, match="mask_kind"):
        ImageFolderDataset(images, masks, mask_kind="labels")
    with pytest.raises(ValueError, match="normalize"):
        ImageFolderDataset(images, masks, normalize="max")
