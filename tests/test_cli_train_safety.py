"""``train`` never loses a run or ignores an option without a word, and says what masks it read.

Every case runs ``python -m unet_course train`` in a subprocess, as a user would: a checkpoint
replaced unasked, a recipe flag that ``--resume`` would drop, a data flag that the chosen
``--data`` does not read, and folder masks whose kind was guessed.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.data import synthetic_em
from unet_course.folders import ImageFolderDataset
from unet_course.maskio import mask_from_labels

# a tiny run: 3 synthetic 64 x 64 images, a depth-2 U-Net of 4 channels, 32-pixel tiles
TINY = ["--images", "3", "--size", "64", "--depth", "2", "--base-channels", "4", "--tile", "32",
        "--val-fraction", "0"]
# the same network on a folder of images (no --images/--size: they are the folder's)
NET = ["--depth", "2", "--base-channels", "4", "--tile", "32", "--val-fraction", "0"]


def run_cli(*args):
    """(exit status, stdout, stderr) of ``python -m unet_course ARGS``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "unet_course", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)
    return done.returncode, done.stdout, done.stderr


def error_line(stderr: str) -> str:
    """The one error line, after asserting that there is exactly one and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def step_of(path) -> int:
    return torch.load(path, weights_only=True)["step"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder holding the last.pt of a 3-step tiny run (cpu preset, lr 0.002)."""
    out = tmp_path_factory.mktemp("trained")
    rc, _, err = run_cli("train", *TINY, "--steps", "3", "--out", out)
    assert rc == 0, err
    return out


@pytest.fixture
def copy_of(trained, tmp_path):
    """A copy of the trained run that a test may continue or replace."""
    return shutil.copytree(trained, tmp_path / "run")


# ------------------------------------------------------------------ an existing checkpoint
def test_an_earlier_checkpoint_is_not_replaced_unasked(copy_of):
    before = (copy_of / "last.pt").read_bytes()
    rc, out, err = run_cli("train", *TINY, "--steps", "2", "--out", copy_of)
    line = error_line(err)
    assert rc == 2 and str(copy_of / "last.pt") in line
    assert "--resume" in line and "--overwrite" in line and "another --out" in line
    assert "training on" not in out and (copy_of / "last.pt").read_bytes() == before


def test_overwrite_replaces_the_earlier_checkpoint(copy_of):
    rc, out, err = run_cli("train", *TINY, "--steps", "2", "--out", copy_of, "--overwrite")
    assert rc == 0, err
    assert step_of(copy_of / "last.pt") == 2  # the new run's, not the earlier run's 3


def test_resume_without_a_checkpoint_says_so(tmp_path):
    rc, out, err = run_cli("train", *TINY, "--steps", "2", "--out", tmp_path / "new", "--resume")
    line = error_line(err)
    assert rc == 2 and str(tmp_path / "new" / "last.pt") in line and "drop --resume" in line
    assert "fit(" not in line and "training on" not in out


def test_resume_and_overwrite_contradict_each_other(copy_of):
    rc, _, err = run_cli("train", *TINY, "--steps", "4", "--out", copy_of, "--resume",
                         "--overwrite")
    line = error_line(err)
    assert rc == 2 and "--resume" in line and "--overwrite" in line and "only one" in line
    assert step_of(copy_of / "last.pt") == 3


# ------------------------------------------------------------------ recipe flags with --resume
@pytest.mark.parametrize("flag, value, said", [
    ("--lr", "0.01", "lr=0.002 there but 0.01 now"),
    ("--dropout", "0.3", "dropout=0.0 there but 0.3 now"),
    ("--preset", "paper", "padding='same' there but 'valid' now"),
])
def test_resume_refuses_a_recipe_flag_other_than_the_checkpoints(copy_of, flag, value, said):
    rc, out, err = run_cli("train", *TINY, "--steps", "5", "--out", copy_of, "--resume", flag, value)
    line = error_line(err)
    assert rc == 2 and said in line and flag in line and "training on" not in out
    assert step_of(copy_of / "last.pt") == 3


def test_resume_accepts_the_checkpoints_own_learning_rate(copy_of):
    rc, out, err = run_cli("train", *TINY, "--steps", "4", "--out", copy_of, "--resume",
                           "--lr", "0.002")
    assert rc == 0, err
    assert "trained 4 steps" in out and step_of(copy_of / "last.pt") == 4


# ------------------------------------------------------------------ data flags of another --data
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """images/ and masks/ (8-bit 0/255) of 3 synthetic 64 x 64 slices."""
    root = tmp_path_factory.mktemp("folder")
    images, masks, _ = synthetic_em(3, size=64, seed=0)
    for name in ("images", "masks"):
        (root / name).mkdir()
    for k, (im, m) in enumerate(zip(images, masks)):
        Image.fromarray((im * 255).astype(np.uint8)).save(root / "images" / f"s{k}.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(root / "masks" / f"s{k}.png")
    return root


@pytest.mark.parametrize("data, extra, flag, owner", [
    ("synthetic-em", ["--masks", "{masks}"], "--masks", "--data folder"),
    ("synthetic-em", ["--root", "{root}"], "--root", "--data isbi2012"),
    ("synthetic-em", ["--download"], "--download", "--data isbi2012"),
    ("synthetic-em", ["--mask-kind", "classes"], "--mask-kind", "--data folder"),
    ("isbi2012", ["--images", "{images}"], "--images", "--data synthetic-em or folder"),
    ("isbi2012", ["--masks", "{masks}"], "--masks", "--data folder"),
    ("isbi2012", ["--size", "64"], "--size", "--data synthetic-em"),
    ("folder", ["--root", "{root}"], "--root", "--data isbi2012"),
    ("folder", ["--download"], "--download", "--data isbi2012"),
    ("folder", ["--size", "64"], "--size", "--data synthetic-em"),
])
def test_a_data_flag_of_another_data_set_is_refused(folder, tmp_path, data, extra, flag, owner):
    paths = {"root": folder, "images": folder / "images", "masks": folder / "masks"}
    args = ["train", "--data", data, *NET, "--steps", "1", "--out", tmp_path / "run"]
    if data == "folder":
        args += ["--images", folder / "images", "--masks", folder / "masks"]
    rc, out, err = run_cli(*args, *(e.format(**paths) for e in extra))
    line = error_line(err)
    assert rc == 2 and f"{flag} belongs to {owner}, not to --data {data}" in line
    assert "training on" not in out and not (tmp_path / "run" / "last.pt").exists()


def test_synthetic_images_keep_their_default_size():
    """--size now defaults to None (to tell "given" from "not given"); 256 still applies."""
    from unet_course import _cli_train
    from unet_course.__main__ import build_parser

    args = build_parser().parse_args(["train", "--images", "1", "--out", "unused"])
    assert args.size is None and args.mask_kind is None and not args.overwrite
    images, _, _ = _cli_train._load_data(args)
    assert images[0].shape == (256, 256)


# ------------------------------------------------------------------ what the masks were read as
def _mask_folder(root, masks, dtype):
    """images/ and masks/ of the 64 x 64 synthetic slices, the masks saved with ``dtype``."""
    images, _, _ = synthetic_em(len(masks), size=64, seed=0)
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    for k, (im, m) in enumerate(zip(images, masks)):
        Image.fromarray((im * 255).astype(np.uint8)).save(root / "images" / f"s{k}.png")
        Image.fromarray(m.astype(dtype)).save(root / "masks" / f"s{k}.png")
    return ["--images", root / "images", "--masks", root / "masks"]


def three_classes(n=2):
    """Masks of class indices 0, 1 and 2 (the right third is class 2)."""
    masks = [m.astype(np.int64) for m in synthetic_em(n, size=64, seed=0)[1]]
    for m in masks:
        m[:, 43:] = 2
    return masks


def test_16bit_class_masks_are_reported_and_can_be_named(tmp_path):
    folder = _mask_folder(tmp_path, three_classes(), np.uint16)
    rc, out, err = run_cli("train", "--data", "folder", *folder, *NET, "--steps", "1",
                           "--out", tmp_path / "auto")
    assert rc == 0, err
    said = [ln for ln in out.splitlines() if ln.startswith("masks:")]
    assert len(said) == 1 and "instance ids" in said[0] and "--mask-kind classes" in said[0]
    rc, out, err = run_cli("train", "--data", "folder", *folder, *NET, "--steps", "1",
                           "--mask-kind", "classes", "--out", tmp_path / "classes")
    assert rc == 0, err
    assert "masks: class indices 0..2 (3 classes)" in out.splitlines()


def test_masks_of_0_and_128_name_the_cli_flag_that_reads_them(tmp_path):
    masks = [m * 128 for m in synthetic_em(2, size=64, seed=0)[1]]
    folder = _mask_folder(tmp_path, masks, np.uint8)
    rc, out, err = run_cli("train", "--data", "folder", *folder, *NET, "--steps", "1",
                           "--out", tmp_path / "auto")
    line = error_line(err)
    assert rc == 2 and "--mask-kind binary" in line and "kind='binary'" not in line
    rc, out, err = run_cli("train", "--data", "folder", *folder, *NET, "--steps", "1",
                           "--mask-kind", "binary", "--out", tmp_path / "binary")
    assert rc == 0, err
    assert any(ln.startswith("masks: binary") and "(2 classes)" in ln for ln in out.splitlines())


def test_untagged_masks_in_the_image_folder_get_advice_that_works(tmp_path):
    both = tmp_path / "both"
    both.mkdir()
    image, mask, _ = synthetic_em(1, size=64, seed=0)
    Image.fromarray((image[0] * 255).astype(np.uint8)).save(both / "s0.png")
    Image.fromarray((mask[0] * 255).astype(np.uint8)).save(both / "s0.tif")  # taken as an image
    rc, _, err = run_cli("train", "--data", "folder", "--images", both, "--masks", both, *NET,
                         "--steps", "1", "--out", tmp_path / "run")
    line = error_line(err)
    assert rc == 2 and str(both / "s0_mask.png") in line and "--masks" in line
    assert f"{both / 's0.png'} (" not in line  # the image's own name cannot be its mask's


# ------------------------------------------------------------------ the same from Python
def test_binary_by_name_takes_any_single_foreground_value():
    mask, ids, kind = mask_from_labels(np.array([[0, 128, 128]], np.uint8), kind="binary")
    assert kind == "binary" and ids is None and mask.tolist() == [[0, 1, 1]]
    with pytest.raises(ValueError, match="binary mask holds 0 and one other value"):
        mask_from_labels(np.array([[0, 128, 255]], np.uint8), kind="binary")


def test_the_folder_keeps_its_raw_label_values(tmp_path):
    _mask_folder(tmp_path, three_classes(), np.uint16)
    ds = ImageFolderDataset(tmp_path / "images", tmp_path / "masks")
    assert ds.kind == "instances" and ds.label_values.tolist() == [0, 1, 2]
    named = ImageFolderDataset(tmp_path / "images", tmp_path / "masks", mask_kind="classes")
    assert named.kind == "classes" and named.num_classes == 3
