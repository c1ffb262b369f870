"""``predict`` feeds the net what training fed it, never destroys its inputs, and handles C > 2.

Every CLI case runs ``python -m unet_course`` in a subprocess, as a user would; the checks of
the library functions behind it (prepare_image, write_probability, fit's stored entry) run
in-process.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.checkpoint import load_checkpoint, stored_normalization
from unet_course.data import synthetic_em
from unet_course.folders import ImageFolderDataset
from unet_course.imageio import bit_depth, prepare_image, read_image, write_probability
from unet_course.model import UNet
from unet_course.predict import predict_class_probabilities, predict_probabilities
from unet_course.train import CheckpointError, fit, load_model, save_checkpoint

SMALL = ["--depth", "2", "--base-channels", "4", "--tile", "32"]


def run_cli(*args):
    """(exit status, stdout, stderr) of ``python -m unet_course ARGS``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "unet_course", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)
    return done.returncode, done.stdout, done.stderr


def error_line(stderr: str) -> str:
    """The one ``error:`` line of ``stderr``, after checking there is one and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def tiff_pages(path) -> np.ndarray:
    """Every page of a TIFF stack, (pages, H, W)."""
    with Image.open(path) as im:
        pages = []
        for k in range(im.n_frames):
            im.seek(k)
            pages.append(np.asarray(im).copy())
    return np.stack(pages)


@pytest.fixture(scope="module")
def folder12(tmp_path_factory):
    """A folder of 12-bit images (0..4095 in 16-bit PNGs), binary masks, and a run trained on it."""
    root = tmp_path_factory.mktemp("folder12")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    images, masks, _ = synthetic_em(4, size=64, seed=0)
    for k, (image, mask) in enumerate(zip(images, masks)):
        twelve_bit = np.round(image * 4095).astype(np.uint16)  # 0..4095 in a 16-bit PNG
        Image.fromarray(twelve_bit).save(root / "images" / f"c{k}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"c{k}.png")
    rc, out, err = run_cli("train", "--data", "folder", "--images", root / "images", "--masks",
                           root / "masks", "--steps", "3", "--val-fraction", "0.25", *SMALL,
                           "--out", root / "run")
    assert rc == 0, err
    assert "held out (1 images): pixel_error" in out
    return root


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """A 3-class checkpoint (untrained, same padding) and an 8-bit image to segment."""
    root = tmp_path_factory.mktemp("three")
    torch.manual_seed(0)
    save_checkpoint(root / "c3.pt", UNet(num_classes=3, depth=2, base_channels=4, padding="same"))
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((40, 52)) * 255).astype(np.uint8)).save(root / "in.png")
    return root


# ------------------------------------------------------------------ 1: one normalisation
def test_folder_training_stores_minmax_and_predict_applies_it(folder12, tmp_path):
    ckpt = folder12 / "run" / "last.pt"
    assert stored_normalization(load_checkpoint(ckpt)) == "minmax"
    image = folder12 / "images" / "c3.png"  # the held-out image
    rc, out, err = run_cli("predict", image, "--checkpoint", ckpt, "--probabilities",
                           "--out", tmp_path / "p.tif")
    assert rc == 0 and "note:" not in err, err
    # what the net gives for the image as the folder dataset (training) normalised it
    seen = ImageFolderDataset(folder12 / "images", folder12 / "masks").images[3]
    assert float(seen.max()) == 1.0  # min-max: the 12-bit image spans [0, 1], not [0, 1/16]
    expected = predict_probabilities(load_model(ckpt), seen)
    np.testing.assert_allclose(tiff_pages(tmp_path / "p.tif")[0], expected, atol=1e-5)
    rc, out, err = run_cli("predict", image, "--checkpoint", ckpt, "--out", tmp_path / "m.png")
    assert rc == 0, err
    mask = np.asarray(Image.open(tmp_path / "m.png"))
    sure = np.abs(expected - 0.5) > 1e-4  # leave pixels at the threshold to float rounding
    np.testing.assert_array_equal(mask[sure], np.where(expected > 0.5, 255, 0)[sure])


def test_synthetic_training_stores_the_readers_values(tmp_path):
    rc, _, err = run_cli("train", "--images", "3", "--size", "64", "--steps", "1", *SMALL,
                         "--out", tmp_path)
    assert rc == 0, err
    assert stored_normalization(load_checkpoint(tmp_path / "last.pt")) == "none"


def test_old_checkpoint_uses_the_readers_values_with_a_note(folder12, tmp_path):
    ckpt = torch.load(folder12 / "run" / "last.pt", weights_only=True)
    del ckpt["extra"]["normalize"]  # as written before the entry existed
    torch.save(ckpt, tmp_path / "old.pt")
    image = folder12 / "images" / "c3.png"
    rc, out, err = run_cli("predict", image, "--checkpoint", tmp_path / "old.pt",
                           "--probabilities", "--out", tmp_path / "p.tif")
    assert rc == 0 and "Traceback" not in err
    notes = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "16-bit" in notes[0] and "--data folder" in notes[0]
    expected = predict_probabilities(load_model(tmp_path / "old.pt"), read_image(image, 1))
    np.testing.assert_allclose(tiff_pages(tmp_path / "p.tif")[0], expected, atol=1e-5)
    # an 8-bit image reads as the course's data sets do: nothing to note
    Image.fromarray(np.full((30, 30), 77, np.uint8)).save(tmp_path / "eight.png")
    rc, out, err = run_cli("predict", tmp_path / "eight.png", "--checkpoint", tmp_path / "old.pt",
                           "--out", tmp_path / "m.png")
    assert rc == 0 and "note:" not in err, err


def test_unknown_normalization_in_a_checkpoint_is_one_line(folder12, tmp_path):
    ckpt = torch.load(folder12 / "run" / "last.pt", weights_only=True)
    ckpt["extra"]["normalize"] = "percentile"
    torch.save(ckpt, tmp_path / "new.pt")
    rc, _, err = run_cli("predict", folder12 / "images" / "c0.png", "--checkpoint",
                         tmp_path / "new.pt", "--out", tmp_path / "m.png")
    assert rc == 2 and "'percentile'" in error_line(err)


def test_prepare_image_is_the_folder_datasets_rule():
    raw = np.linspace(0.01, 0.06, 30, dtype=np.float32).reshape(5, 6)
    from unet_course.imageio import normalize_intensity

    for mode in ("minmax", "zscore", "none"):
        np.testing.assert_array_equal(prepare_image(raw, mode), normalize_intensity(raw, mode))
    np.testing.assert_array_equal(prepare_image(raw, None), raw)  # an old checkpoint
    with pytest.raises(ValueError, match="'percentile'.*update unet_course"):
        prepare_image(raw, "percentile")


def test_bit_depth(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "b.png")
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "c.tif")
    Image.fromarray(np.zeros((4, 4), bool)).save(tmp_path / "d.png")
    assert [bit_depth(tmp_path / n) for n in ("a.png", "b.png", "c.tif", "d.png")] == [8, 16, 32, 1]


def _tiny_fit(tmp_path, steps, **kwargs):
    from unet_course.data import TileDataset

    images, masks, _ = synthetic_em(1, size=64, seed=0)
    model = UNet(depth=1, base_channels=2, padding="same")
    data = TileDataset(list(images), list(masks), 32, 32, seed=0, length=4)
    fit(model, data, steps=steps, checkpoint_dir=tmp_path, progress=False, **kwargs)


def test_fit_stores_keeps_and_checks_the_normalization(tmp_path):
    _tiny_fit(tmp_path, 1, normalize="minmax")
    assert stored_normalization(load_checkpoint(tmp_path / "last.pt")) == "minmax"
    _tiny_fit(tmp_path, 2, resume=tmp_path / "last.pt")  # not given: the resumed run's
    assert stored_normalization(load_checkpoint(tmp_path / "last.pt")) == "minmax"
    with pytest.raises(CheckpointError, match="normalised with 'minmax', not 'none'"):
        _tiny_fit(tmp_path, 3, resume=tmp_path / "last.pt", normalize="none")
    with pytest.raises(ValueError, match="normalize must be"):
        _tiny_fit(tmp_path / "x", 1, normalize="percentile")


# ------------------------------------------------------------------ 3: files predict must not touch
def test_out_that_is_the_input_image_is_refused(three_classes, tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes((three_classes / "in.png").read_bytes())
    before = image.read_bytes()
    ckpt = three_classes / "c3.pt"
    os.link(image, tmp_path / "hard.png")
    for out in (image, tmp_path / "sub" / ".." / "in.png", tmp_path / "hard.png"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        rc, _, err = run_cli("predict", image, "--checkpoint", ckpt, "--out", out)
        assert rc == 2 and "the input image" in error_line(err)
    assert image.read_bytes() == before


def test_out_that_is_the_checkpoint_is_refused(three_classes, tmp_path):
    ckpt = tmp_path / "c3.pt"
    ckpt.write_bytes((three_classes / "c3.pt").read_bytes())
    before = ckpt.read_bytes()
    rc, _, err = run_cli("predict", three_classes / "in.png", "--checkpoint", ckpt, "--out", ckpt)
    assert rc == 2 and "the checkpoint" in error_line(err)
    assert ckpt.read_bytes() == before


def test_out_that_is_a_symbolic_link_is_refused(three_classes, tmp_path):
    target = tmp_path / "precious.png"
    target.write_bytes(b"keep me")
    (tmp_path / "link.png").symlink_to(target)
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    for link in ("link.png", "dangling.png"):
        rc, _, err = run_cli("predict", three_classes / "in.png", "--checkpoint",
                             three_classes / "c3.pt", "--out", tmp_path / link)
        assert rc == 2 and "symbolic link" in error_line(err)
    assert target.read_bytes() == b"keep me" and not (tmp_path / "nowhere.png").exists()


def test_an_earlier_mask_is_replaced(three_classes, tmp_path):
    (tmp_path / "m.png").write_bytes(b"an earlier mask")
    rc, _, err = run_cli("predict", three_classes / "in.png", "--checkpoint",
                         three_classes / "c3.pt", "--out", tmp_path / "m.png")
    assert rc == 0, err
    assert np.asarray(Image.open(tmp_path / "m.png")).shape == (40, 52)


# ------------------------------------------------------------------ 4: more than two classes
def _class_probabilities(root) -> np.ndarray:
    image = prepare_image(read_image(root / "in.png", 1), "none")  # c3.pt records nothing
    return predict_class_probabilities(load_model(root / "c3.pt"), image)


def test_three_classes_write_the_class_map(three_classes, tmp_path):
    rc, out, err = run_cli("predict", three_classes / "in.png", "--checkpoint",
                           three_classes / "c3.pt", "--out", tmp_path / "m.png")
    assert rc == 0, err
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "L"
        labels = np.asarray(im)
    probs = _class_probabilities(three_classes)
    top2 = np.sort(probs, axis=0)[-2:]
    sure = top2[1] - top2[0] > 1e-4  # leave near-ties to float rounding
    np.testing.assert_array_equal(labels[sure], probs.argmax(0)[sure])
    assert "class indices 0..2" in out
    for k in range(3):
        assert f"class {k} {100 * np.mean(labels == k):.1f}%" in out


def test_three_classes_write_every_probability_to_a_tiff(three_classes, tmp_path):
    rc, out, err = run_cli("predict", three_classes / "in.png", "--checkpoint",
                           three_classes / "c3.pt", "--probabilities", "--out", tmp_path / "p.tif")
    assert rc == 0, err
    pages = tiff_pages(tmp_path / "p.tif")
    assert pages.dtype == np.float32 and pages.shape == (3, 40, 52)
    np.testing.assert_allclose(pages, _class_probabilities(three_classes), atol=1e-5)
    np.testing.assert_allclose(pages.sum(0), 1.0, atol=1e-5)
    assert "3 pages" in out and "class 2" in out


@pytest.mark.parametrize("args, message", [
    (["--probabilities", "--out", "p.png"], ".tif"),
    (["--threshold", "0.3", "--out", "m.png"], "--threshold"),
    (["--threshold", "0.5", "--out", "m.png"], "--threshold"),
    (["--out", "m.jpg"], "lossless"),
])
def test_three_classes_refuse_what_means_nothing(args, message, three_classes, tmp_path):
    args = [tmp_path / a if a.endswith(("png", "jpg")) else a for a in args]
    rc, _, err = run_cli("predict", three_classes / "in.png", "--checkpoint",
                         three_classes / "c3.pt", *args)
    assert rc == 2 and message in error_line(err)
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_more_than_256_classes_write_16_bit_indices(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "c300.pt",
                    UNet(num_classes=300, depth=1, base_channels=2, padding="same"))
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "in.png")
    rc, out, err = run_cli("predict", tmp_path / "in.png", "--checkpoint", tmp_path / "c300.pt",
                           "--out", tmp_path / "m.png")
    assert rc == 0, err
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode.startswith("I")  # 16-bit
    assert "16-bit" in out and "(290 more)" in out


def test_write_probability_stacks_classes_in_a_tiff_only(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(5, 7)).transpose(2, 0, 1)
    write_probability(tmp_path / "p.tif", probs.astype(np.float32))
    for k in range(3):
        np.testing.assert_array_equal(read_image(tmp_path / "p.tif", page=k)[0],
                                      probs[k].astype(np.float32))
    with pytest.raises(ValueError, match=r"PNG holds one map \(H, W\).*\.tif"):
        write_probability(tmp_path / "p.png", probs)
