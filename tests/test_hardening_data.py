"""Hardening of the data package: one image reader for every path, and no silent failures.

ISBI 2012 slices are read with unet_course.imageio (no second reader), a slice of another size
is named in the error, and the data package, its old import paths and its argument checks
behave as documented.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from PIL import Image

import unet_course.data.isbi2012 as isbi_module
from unet_course import imageio
from unet_course.data import (
    ISBI2012,
    ImageFolderDataset,
    ManifestEntry,
    TileDataset,
    download_files,
    read_manifest,
    synthetic_em,
    touching_cells,
    toy_blobs,
)
from unet_course.validation import label_image


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _write_isbi(root, images, labels) -> list[ManifestEntry]:
    """Write image/N.png and label/N.png under ``root``; return their manifest."""
    entries = []
    for kind, arrays in (("image", images), ("label", labels)):
        for i, array in enumerate(arrays):
            body = _png_bytes(array)
            path = root / kind / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            entries.append(ManifestEntry(f"{kind}/{i}.png", len(body),
                                         hashlib.sha256(body).hexdigest()))
    return entries


def _slices(n=3, shape=(24, 32), seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]
    labels = [np.where(rng.random(shape) > 0.3, 255, 0).astype(np.uint8) for _ in range(n)]
    return images, labels


# ------------------------------------------------------------------ ISBI 2012: sizes are named


def test_isbi_slice_of_another_size_names_the_file_and_both_shapes(tmp_path):
    images, labels = _slices()
    images[1] = np.zeros((20, 32), np.uint8)  # one slice of another size
    manifest = _write_isbi(tmp_path, images, labels)
    with pytest.raises(ValueError) as err:
        ISBI2012(tmp_path, manifest=manifest, verify=False)
    msg = str(err.value)
    assert str(tmp_path / "image" / "1.png") in msg
    assert "(20, 32)" in msg and "(24, 32)" in msg


def test_isbi_label_of_another_size_is_named(tmp_path):
    images, labels = _slices()
    labels[2] = np.zeros((24, 30), np.uint8)
    manifest = _write_isbi(tmp_path, images, labels)
    with pytest.raises(ValueError, match=r"label.2\.png has shape \(24, 30\).*\(24, 32\)"):
        ISBI2012(tmp_path, manifest=manifest, verify=False)


def test_isbi_tiff_page_of_another_size_and_page_count_mismatch(tmp_path):
    pages = [Image.fromarray(np.full((20, 30), v, np.uint8)) for v in (10, 20, 30)]
    pages[2] = Image.fromarray(np.zeros((16, 30), np.uint8))
    pages[0].save(tmp_path / "train-volume.tif", save_all=True, append_images=pages[1:])
    labels = [Image.fromarray(np.zeros((20, 30), np.uint8)) for _ in range(3)]
    labels[0].save(tmp_path / "train-labels.tif", save_all=True, append_images=labels[1:])
    with pytest.raises(ValueError, match=r"page 2 of .*train-volume\.tif has shape \(16, 30\)"):
        ISBI2012(tmp_path)
    labels[0].save(tmp_path / "train-labels.tif", save_all=True, append_images=labels[1:2])
    with pytest.raises(ValueError, match="3 image slices and 2 label slices"):
        ISBI2012(tmp_path)


def test_isbi_empty_manifest_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one slice"):
        ISBI2012(tmp_path, manifest=[], verify=False)


# ------------------------------------------------------------------ ISBI 2012: the one reader


def test_isbi_reads_through_imageio(tmp_path, monkeypatch):
    images, labels = _slices(n=2)
    manifest = _write_isbi(tmp_path, images, labels)
    seen = []

    def spy(path, *args, **kwargs):
        seen.append(path.name)
        return imageio.read_image(path, *args, **kwargs)

    monkeypatch.setattr(isbi_module, "read_image", spy)
    ds = ISBI2012(tmp_path, manifest=manifest, verify=False)
    assert sorted(seen) == ["0.png", "0.png", "1.png", "1.png"]
    # 8-bit: value / 255 exactly as float32, labels 255 -> 1
    expected = (np.stack(images).astype(np.float32) / 255.0).astype(np.float32)
    np.testing.assert_array_equal(ds.images, expected)
    assert ds.images.dtype == np.float32 and ds.masks.dtype == np.int64
    np.testing.assert_array_equal(ds.masks, np.stack(labels) == 255)
    assert not hasattr(isbi_module, "_read_gray")


def test_isbi_16bit_slice_keeps_its_true_range(tmp_path):
    # converting to Pillow's "L" used to clip every 16-bit value above 255 to white
    images = [np.array([[0, 1000], [30000, 65535]], np.uint16)]
    labels = [np.array([[0, 255], [255, 0]], np.uint8)]
    manifest = _write_isbi(tmp_path, images, labels)
    ds = ISBI2012(tmp_path, manifest=manifest, verify=False)
    np.testing.assert_allclose(ds.images[0], images[0] / 65535.0, atol=1e-7)


def test_isbi_float_tiff_stack_is_not_zeros_and_labels_of_any_depth(tmp_path):
    vol = np.linspace(0.0, 1.0, 2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    pages = [Image.fromarray(p) for p in vol]
    pages[0].save(tmp_path / "train-volume.tif", save_all=True, append_images=pages[1:])
    lab = np.zeros((2, 4, 6), bool)
    lab[:, :2] = True
    label_pages = [Image.fromarray(p) for p in lab]  # 1-bit pages: True is "cell"
    label_pages[0].save(tmp_path / "train-labels.tif", save_all=True,
                        append_images=label_pages[1:])
    ds = ISBI2012(tmp_path)
    np.testing.assert_allclose(ds.images, vol, atol=1e-7)
    np.testing.assert_array_equal(ds.masks, lab)


# ------------------------------------------------------------------ the shipped manifest


def test_manifest_table_parses_to_the_csv_and_default_entries():
    from unet_course._manifests import ISBI2012_FILES, ISBI2012_MANIFEST_CSV

    entries = read_manifest(ISBI2012_MANIFEST_CSV)
    assert [(e.path, e.size, e.sha256) for e in entries] == list(ISBI2012_FILES)
    assert [e.path for e in entries[:2]] == ["image/0.png", "image/1.png"]
    assert entries[30].path == "label/0.png" and entries[-1].path == "label/29.png"
    assert ISBI2012.MANIFEST == ISBI2012_MANIFEST_CSV


# ------------------------------------------------------------------ old import paths


def test_old_import_paths_still_work():
    import unet_course.data as data
    import unet_course.folders as folders
    import unet_course.maskio as maskio

    assert folders.ImageFolderDataset is ImageFolderDataset
    assert folders.write_cell_folder is data.write_cell_folder
    assert folders.MASK_TAGS == ("", "_mask", "_label", "_labels")
    for name in ("read_mask", "mask_from_labels", "guess_mask_kind", "MAX_CLASSES"):
        assert getattr(imageio, name) is getattr(maskio, name)
    for name in data.__all__:
        assert hasattr(data, name)
    assert issubclass(ImageFolderDataset, data.ImageMaskPairs)  # one base class for both
    assert issubclass(ISBI2012, data.ImageMaskPairs)


def test_count_pages(tmp_path):
    pages = [Image.fromarray(np.zeros((4, 4), np.uint8)) for _ in range(3)]
    pages[0].save(tmp_path / "s.tif", save_all=True, append_images=pages[1:])
    pages[0].save(tmp_path / "one.png")
    assert imageio.count_pages(tmp_path / "s.tif") == 3
    assert imageio.count_pages(tmp_path / "one.png") == 1
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        imageio.count_pages(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        imageio.count_pages(tmp_path / "none.png")


# ------------------------------------------------------------------ argument checks


@pytest.mark.parametrize("gen", [synthetic_em, touching_cells])
def test_generators_refuse_a_float_seed_and_name_the_argument(gen):
    with pytest.raises(TypeError, match="seed"):
        gen(1, 64, seed=1.5)
    with pytest.raises(TypeError, match="n"):
        gen(2.0)
    with pytest.raises(ValueError, match="pixels so that several cells fit"):
        gen(1, size=16)
    assert gen(0, 64)[0].shape == (0, 64, 64)


def test_synthetic_generators_are_unchanged_by_the_shared_frame():
    # the shared checking/stacking code must not change the arrays: image i of n is image i of 1
    for gen, size in ((synthetic_em, 64), (touching_cells, 48)):
        one = gen(1, size, seed=7)
        two = gen(2, size, seed=7)
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a[0], b[0])
        assert [a.dtype for a in two] == [np.float32, np.int64, np.int32]


def test_tile_dataset_checks_at_construction():
    img, msk = np.zeros((1, 32, 32), np.float32), np.zeros((1, 32, 32), np.int64)
    with pytest.raises(ValueError, match="seed"):
        TileDataset(img, msk, 32, 20, seed=-1)  # failed only at the first item before
    with pytest.raises(ValueError, match="length"):
        TileDataset(img, msk, 32, 20, length=0)
    with pytest.raises(TypeError, match="input_size"):
        TileDataset(img, msk, 32.0, 20)
    with pytest.raises(ValueError, match="output_size"):
        TileDataset(img, msk, 32, (20, 20, 20))
    ds = TileDataset(img, msk, (32, 32), [20, 20], length=np.int64(3), seed=np.int64(2))
    assert len(ds) == 3 and ds[0][0].shape == (1, 32, 32)


def test_download_files_refuses_a_bad_timeout(tmp_path):
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            download_files([], "http://127.0.0.1/", tmp_path, timeout=bad)
    assert download_files([], "http://127.0.0.1/", tmp_path) == []


def test_toy_blobs_lives_in_the_data_package():
    images, masks = toy_blobs(4, size=16, seed=1)
    assert images.shape == (4, 1, 16, 16) and masks.shape == (4, 16, 16)
    assert images.dtype == torch.float32 and masks.dtype == torch.int64
    with pytest.raises(ValueError, match="size"):
        toy_blobs(2, size=8)
    with pytest.raises(TypeError, match="n"):
        toy_blobs(2.0)


def test_label_image_check():
    out = label_image(torch.ones(3, 4, dtype=torch.int64), "mask")
    assert isinstance(out, np.ndarray) and out.shape == (3, 4)
    with pytest.raises(ValueError, match=r"mask must be one image \(H, W\), got shape \(1, 3, 4\)"):
        label_image(np.zeros((1, 3, 4), np.int64), "mask")
    with pytest.raises(TypeError, match="float32; use a threshold"):
        label_image(np.zeros((3, 4), np.float32), "mask", "use a threshold")
