"""Multi-modal input from disk: stacks of pages, per-modality folders, train and predict.

Real files are written in ``tmp_path``; the command line runs in-process through
``unet_course.__main__.main`` (exit status and the one ``error:`` line on stderr, as a user sees
them).
"""

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.__main__ import main
from unet_course.checkpoint import (
    load_checkpoint,
    load_model,
    save_checkpoint,
    stored_modalities,
    stored_normalization,
)
from unet_course.data import (
    ModalityFolderDataset,
    multimodal_cells,
    read_modality_files,
    write_modality_folders,
)
from unet_course.data.multimodal import MODALITIES
from unet_course.imageio import normalize_intensity, read_image
from unet_course.model import UNet
from unet_course.predict import predict_probabilities

SORTED = tuple(sorted(MODALITIES))  # the channel order of per-modality folders
SMALL = ["--depth", "2", "--base-channels", "4", "--tile", "32"]


def save_stack(path, pages):
    """A TIFF with one page per (H, W) array (8-bit, 16-bit or float32 pages)."""
    images = [Image.fromarray(p) for p in pages]
    images[0].save(path, save_all=True, append_images=images[1:])
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ read_image: a stack of pages
def test_a_stack_reads_as_one_channel_per_page(tmp_path):
    pages = [np.full((5, 7), v, np.uint8) for v in (0, 51, 255)]
    path = save_stack(tmp_path / "s.tif", pages)
    image = read_image(path, page="all")
    assert image.shape == (3, 5, 7) and image.dtype == np.float32
    np.testing.assert_allclose(image[:, 0, 0], [0, 0.2, 1.0], atol=1e-7)
    assert np.array_equal(read_image(path, channels=3, page="all"), image)


def test_every_page_keeps_its_own_bit_depth_rule(tmp_path):
    pages = [np.full((4, 4), 65535, np.uint16), np.full((4, 4), 0.25, np.float32)]
    image = read_image(save_stack(tmp_path / "mixed.tif", pages), page="all")
    np.testing.assert_allclose(image[:, 0, 0], [1.0, 0.25], atol=1e-6)


def test_a_stack_of_the_wrong_count_is_refused_not_converted(tmp_path):
    path = save_stack(tmp_path / "s.tif", [np.zeros((4, 4), np.uint8)] * 3)
    with pytest.raises(ValueError, match="holds 3 channel.*channels=2"):
        read_image(path, channels=2, page="all")
    with pytest.raises(ValueError, match="holds 3 channel.*channels=1"):
        read_image(path, channels=1, page="all")  # never a luma mix of three modalities
    with pytest.raises(ValueError, match="3 pages"):
        read_image(path)  # without page="all" a stack still needs a page


def test_old_channel_rules_are_unchanged(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(np.full((4, 4), 102, np.uint8)).save(tmp_path / "g.png")
    np.testing.assert_allclose(read_image(tmp_path / "c.png", 1)[0], 0.299, atol=1e-6)
    assert read_image(tmp_path / "g.png", 3).shape == (3, 4, 4)
    assert read_image(tmp_path / "g.png", page="all").shape == (1, 4, 4)
    with pytest.raises(ValueError, match="holds 1 channel.*channels=2"):
        read_image(tmp_path / "g.png", channels=2)
    with pytest.raises(ValueError, match="channels must be"):
        read_image(tmp_path / "g.png", channels=0)


def test_colour_pages_and_pages_of_two_sizes_are_refused(tmp_path):
    colour = [np.zeros((4, 4, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match="page 0 .* is in colour"):
        read_image(save_stack(tmp_path / "c.tif", colour), page="all")
    sizes = [np.zeros((4, 4), np.uint8), np.zeros((4, 6), np.uint8)]
    with pytest.raises(ValueError, match="page 1 .* 6x4 pixels but page 0 is 4x4"):
        read_image(save_stack(tmp_path / "z.tif", sizes), page="all")


def test_channel_minmax_scales_each_channel_on_its_own():
    image = np.stack([np.array([[0.0, 0.1]]), np.array([[0.5, 1.0]])])
    np.testing.assert_allclose(normalize_intensity(image, "channel_minmax"),
                               [[[0, 1]], [[0, 1]]])
    np.testing.assert_allclose(normalize_intensity(image, "minmax"), [[[0, 0.1]], [[0.5, 1]]])
    np.testing.assert_allclose(normalize_intensity(image[1, 0], "channel_minmax"), [0, 1])


# ------------------------------------------------------------------ the synthetic data set
def test_multimodal_cells_shapes_range_and_seed():
    images, masks = multimodal_cells(3, size=64, seed=4)
    assert images.shape == (3, 3, 64, 64) and images.dtype == np.float32
    assert masks.shape == (3, 64, 64) and masks.dtype == np.int64
    assert images.min() >= 0 and images.max() <= 1 and set(np.unique(masks)) <= {0, 1}
    again, _ = multimodal_cells(2, size=64, seed=4)
    assert np.array_equal(again, images[:2])  # image i does not depend on n


def test_each_channel_shows_what_its_docstring_says():
    from scipy import ndimage as ndi

    images, masks = multimodal_cells(8, size=128, seed=0)
    outline, uptake, noisy = images.transpose(1, 0, 2, 3)
    target = masks == 1
    assert 0.05 < target.mean() < 0.2
    # uptake and noisy share the targets out: every target in one of them at least, each
    # showing about two in three (targets do not touch, so each is one component)
    in_uptake, in_noisy = [], []
    for k in range(len(masks)):
        labels, count = ndi.label(target[k])
        for i in range(1, count + 1):
            inside = labels == i
            if inside.sum() < 80:  # cut by the image border: too few pixels to average noise
                continue
            in_uptake.append(uptake[k][inside].max() > 0.5)
            in_noisy.append(noisy[k][inside].mean() > noisy[k][~target[k]].mean() + 0.12)
    in_uptake, in_noisy = np.array(in_uptake), np.array(in_noisy)
    assert len(in_uptake) > 30 and np.all(in_uptake | in_noisy)
    assert 0.5 < in_uptake.mean() < 0.85 and 0.5 < in_noisy.mean() < 0.85
    assert noisy[~target].std() > 0.25  # a single pixel cannot be trusted
    # outline: target insides at background level, away from the rims
    core = ndi.binary_erosion(target, iterations=3, structure=np.ones((1, 3, 3)))
    far = ~ndi.binary_dilation(outline > 0.55, iterations=3, structure=np.ones((1, 3, 3)))
    assert abs(outline[core].mean() - outline[far].mean()) < 0.03


# ------------------------------------------------------------------ per-modality folders
@pytest.fixture()
def folders(tmp_path):
    return write_modality_folders(tmp_path / "data", n=4, size=64, seed=0)


def test_modality_folders_stack_in_sorted_order(folders):
    data = ModalityFolderDataset(folders / "images", folders / "masks")
    assert data.modalities == SORTED and len(data) == 4
    image, mask = data[2]
    assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
    for k, modality in enumerate(SORTED):
        raw = read_image(folders / "images" / modality / "scene_2.png")[0]
        np.testing.assert_allclose(image[k], normalize_intensity(raw), atol=1e-6)
    _, masks = multimodal_cells(4, size=64, seed=0)
    assert np.array_equal(np.stack(data.masks), masks)


def test_a_missing_modality_file_is_named(folders):
    (folders / "images" / "uptake" / "scene_2.png").unlink()
    (folders / "images" / "noisy" / "scene_0.png").unlink()
    with pytest.raises(FileNotFoundError) as err:
        ModalityFolderDataset(folders / "images", folders / "masks")
    message = str(err.value)
    assert "noisy lacks scene_0" in message and "uptake lacks scene_2" in message


def test_loose_images_or_registration_errors_are_refused(folders):
    small = np.zeros((32, 32), np.uint8)
    Image.fromarray(small).save(folders / "images" / "uptake" / "scene_1.png")
    with pytest.raises(ValueError, match="32x32 pixels but .*64x64.*registered"):
        ModalityFolderDataset(folders / "images", folders / "masks")
    Image.fromarray(small).save(folders / "images" / "loose.png")
    with pytest.raises(ValueError, match="one folder per modality.*--data folder"):
        ModalityFolderDataset(folders / "images", folders / "masks")


# ------------------------------------------------------------------ read_modality_files
def test_files_or_a_stack_give_the_same_input(folders, tmp_path):
    files = [folders / "images" / m / "scene_1.png" for m in SORTED]
    by_files = read_modality_files(files, 3, SORTED)
    pages = [np.asarray(Image.open(f)) for f in files]
    by_stack = read_modality_files([save_stack(tmp_path / "s.tif", pages)], 3, SORTED)
    assert by_files.shape == (3, 64, 64) and np.array_equal(by_files, by_stack)


def test_read_modality_files_refuses_every_mismatch(folders):
    files = [folders / "images" / m / "scene_1.png" for m in SORTED]
    with pytest.raises(ValueError, match="2 image files given but the net has 3"):
        read_modality_files(files[:2], 3, SORTED)
    with pytest.raises(ValueError, match="folder named 'outline' but is given as channel 0"):
        read_modality_files([files[1], files[0], files[2]], 3, SORTED)
    with pytest.raises(ValueError, match="holds 1 channel.*3 input channels"):
        read_modality_files(files[:1], 3, SORTED)  # no silent gray-to-RGB for modalities
    assert read_modality_files(files[:1], 3).shape == (3, 64, 64)  # an RGB net, as before


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = write_modality_folders(tmp_path_factory.mktemp("mm"), n=4, size=64, seed=0)
    rc = main(["train", "--data", "modalities", "--images", str(root / "images"), "--masks",
               str(root / "masks"), "--steps", "2", "--val-fraction", "0.25", *SMALL,
               "--out", str(root / "run")])
    assert rc == 0
    return root


def test_train_stores_the_modalities_and_their_normalisation(trained, capsys):
    ckpt = load_checkpoint(trained / "run" / "last.pt")
    assert stored_modalities(ckpt) == SORTED
    assert stored_normalization(ckpt) == "channel_minmax"
    assert ckpt["config"]["in_channels"] == 3
    assert load_model(trained / "run" / "last.pt").modalities == SORTED


def test_predict_from_files_or_a_stack_matches_the_package(trained, tmp_path, capsys):
    ckpt = trained / "run" / "last.pt"
    files = [trained / "images" / m / "scene_3.png" for m in SORTED]
    rc = main(["predict", *map(str, files), "--checkpoint", str(ckpt), "--probabilities",
               "--out", str(tmp_path / "files.tif")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "channels: noisy <- scene_3.png, outline <- scene_3.png, uptake <- scene_3.png" in out
    pages = [np.asarray(Image.open(f)) for f in files]
    stack = save_stack(tmp_path / "scene_3.tif", pages)
    assert main(["predict", str(stack), "--checkpoint", str(ckpt), "--probabilities",
                 "--out", str(tmp_path / "stack.tif")]) == 0
    assert "<- pages 0..2 of scene_3.tif" in capsys.readouterr().out
    seen = ModalityFolderDataset(trained / "images", trained / "masks").images[3]
    expected = predict_probabilities(load_model(ckpt), seen)
    for name in ("files.tif", "stack.tif"):
        got = np.asarray(Image.open(tmp_path / name), np.float32)
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("how, message", [
    ("two files", "2 image files given but the net has 3 input channel"),
    ("swapped", "lies in a folder named 'outline' but is given as channel 0"),
    ("one gray file", "holds 1 channel(s) but the net has 3 input channels"),
    ("two pages", "holds 2 channel(s) but channels=3"),
])
def test_predict_refuses_input_that_does_not_fit_the_net(trained, tmp_path, capsys, how,
                                                         message):
    files = [trained / "images" / m / "scene_0.png" for m in SORTED]
    given = {"two files": files[:2], "swapped": [files[1], files[0], files[2]],
             "one gray file": files[:1],
             "two pages": [save_stack(tmp_path / "two.tif",
                                      [np.asarray(Image.open(f)) for f in files[:2]])]}[how]
    rc = main(["predict", *map(str, given), "--checkpoint", str(trained / "run" / "last.pt"),
               "--out", str(tmp_path / "m.png")])
    assert rc == 2 and message in error_line(capsys)
    assert not (tmp_path / "m.png").exists()


def test_a_one_channel_net_refuses_a_stack(tmp_path, capsys):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "one.pt", UNet(depth=2, base_channels=4, padding="same"))
    stack = save_stack(tmp_path / "s.tif", [np.zeros((16, 16), np.uint8)] * 3)
    rc = main(["predict", str(stack), "--checkpoint", str(tmp_path / "one.pt"),
               "--out", str(tmp_path / "m.png")])
    assert rc == 2 and "holds 3 channel(s) but channels=1" in error_line(capsys)


def test_resume_on_other_modalities_is_refused(trained, tmp_path, capsys):
    import shutil

    other = tmp_path / "images"
    shutil.copytree(trained / "images", other)
    (other / "uptake").rename(other / "pet")
    rc = main(["train", "--data", "modalities", "--images", str(other), "--masks",
               str(trained / "masks"), "--steps", "4", *SMALL, "--out",
               str(trained / "run"), "--resume"])
    line = error_line(capsys)
    assert rc == 2 and "trained on the modalities noisy, outline, uptake" in line
    assert "gives noisy, outline, pet" in line


def test_train_names_a_missing_modality_file(trained, tmp_path, capsys):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(trained / "images", images)
    (images / "outline" / "scene_1.png").unlink()
    rc = main(["train", "--data", "modalities", "--images", str(images), "--masks",
               str(trained / "masks"), "--steps", "1", *SMALL, "--out", str(tmp_path / "r")])
    line = error_line(capsys)
    assert rc == 2 and "outline lacks scene_1" in line
