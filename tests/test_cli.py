"""python -m unet_course: draw, train, predict; one-line errors instead of tracebacks."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from unet_course.__main__ import main


def test_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "unet_course", "train", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for option in ("--data", "--steps", "--out", "--root", "--download", "--resume", "--optimizer",
                   "--lr", "--tile", "--seed", "--preset", "--time-budget", "--val-fraction",
                   "--masks"):
        assert option in out
    out = subprocess.run([sys.executable, "-m", "unet_course", "predict", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--checkpoint" in out and "--out" in out and "image" in out and "--probabilities" in out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "--data", "synthetic-em", "--images", "3", "--size", "96", "--steps", "3",
               "--depth", "2", "--base-channels", "4", "--tile", "60", "--out", str(out)])
    assert rc == 0
    return out / "last.pt"


def test_train_writes_a_checkpoint_and_resume_continues(checkpoint, capsys):
    assert checkpoint.is_file()
    rc = main(["train", "--images", "3", "--size", "96", "--steps", "5", "--depth", "2",
               "--base-channels", "4", "--tile", "60", "--out", str(checkpoint.parent), "--resume"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "held out (1 images): pixel_error" in out
    assert "baseline (Otsu): pixel_error" in out


def test_resume_with_no_steps_left_says_so(checkpoint, capsys):
    rc = main(["train", "--images", "3", "--size", "96", "--steps", "2", "--depth", "2",
               "--base-channels", "4", "--tile", "60", "--out", str(checkpoint.parent), "--resume"])
    assert rc == 2
    assert "already at step" in capsys.readouterr().err


def test_predict_any_image_size(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((77, 93)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    rc = main(["predict", str(tmp_path / "in.png"), "--checkpoint", str(checkpoint),
               "--out", str(tmp_path / "mask.png")])
    assert rc == 0
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (77, 93) and set(np.unique(mask)) <= {0, 255}


def test_predict_with_symmetries_is_the_mean_of_the_turned_images(checkpoint, tmp_path):
    # A float32 TIFF keeps the probabilities exact enough to compare the CLI with the package.
    from unet_course.imageio import prepare_image, read_image
    from unet_course.predict import predict_probabilities
    from unet_course.train import load_model

    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((64, 80)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    for flag, name in ((["--symmetries"], "sym.tif"), ([], "plain.tif")):
        subprocess.run([sys.executable, "-m", "unet_course", "predict", str(tmp_path / "in.png"),
                        "--checkpoint", str(checkpoint), "--out", str(tmp_path / name),
                        "--probabilities", *flag], check=True, capture_output=True)
    sym, plain = (np.asarray(Image.open(tmp_path / n), np.float32) for n in ("sym.tif", "plain.tif"))
    model = load_model(checkpoint)
    image = prepare_image(read_image(tmp_path / "in.png"), "none")
    assert np.allclose(sym, predict_probabilities(model, image, symmetries=True), atol=1e-5)
    assert not np.allclose(sym, plain, atol=1e-3)  # 3 steps of training: far from symmetric


@pytest.mark.parametrize("case, message", [
    ("missing_image", "no image at"),
    ("not_an_image", "cannot read"),
    ("missing_checkpoint", "no checkpoint at"),
    ("bad_out_folder", "does not exist"),
])
def test_bad_input_gives_one_line(case, message, checkpoint, tmp_path, capsys):
    (tmp_path / "text.png").write_text("not a picture")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    image = {"missing_image": tmp_path / "nope.png", "not_an_image": tmp_path / "text.png"}.get(
        case, tmp_path / "ok.png")
    ckpt = tmp_path / "none.pt" if case == "missing_checkpoint" else checkpoint
    out = tmp_path / "no_such_dir" / "m.png" if case == "bad_out_folder" else tmp_path / "m.png"
    rc = main(["predict", str(image), "--checkpoint", str(ckpt), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_invalid_draw_size_is_one_line(tmp_path, capsys):
    assert main(["draw", "--size", "570", "--out", str(tmp_path / "u.png")]) == 2
    assert "556 or 572" in capsys.readouterr().err


def test_same_seed_gives_the_same_weights(tmp_path):
    import torch

    runs = []
    for name in ("a", "b"):
        assert main(["train", "--images", "2", "--size", "64", "--steps", "2", "--depth", "2",
                     "--base-channels", "4", "--tile", "32", "--val-fraction", "0", "--seed", "3",
                     "--out", str(tmp_path / name)]) == 0
        runs.append(torch.load(tmp_path / name / "last.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_time_budget_stops_training(tmp_path, capsys):
    rc = main(["train", "--images", "2", "--size", "64", "--time-budget", "0.002", "--depth", "2",
               "--base-channels", "4", "--tile", "32", "--val-fraction", "0",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "stops after 0.002 min" in out
    steps = int(out.split("trained ")[1].split()[0])
    assert 1 <= steps < 10**6  # stopped by the clock, not by a step count


def test_val_fraction_that_leaves_nothing_to_train_on(tmp_path, capsys):
    rc = main(["train", "--images", "1", "--size", "64", "--steps", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "holds 1 of the 1 image(s) out for validation" in err
    assert "leaves none to train on" in err and "at least 2 images" in err and "--val-fraction 0" in err


def test_folder_data_and_probabilities(tmp_path, capsys):
    from unet_course.data import synthetic_em

    images, masks, _ = synthetic_em(3, size=64, seed=0)
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for k, (im, m) in enumerate(zip(images, masks)):
        Image.fromarray((im * 65535).astype(np.uint16)).save(tmp_path / "img" / f"s{k}.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "lab" / f"s{k}.png")
    rc = main(["train", "--data", "folder", "--images", str(tmp_path / "img"), "--masks",
               str(tmp_path / "lab"), "--steps", "2", "--depth", "2", "--base-channels", "4",
               "--tile", "32", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 0 and "training on 2 folder images, 1 held out" in out
    rc = main(["predict", str(tmp_path / "img" / "s0.png"), "--checkpoint",
               str(tmp_path / "run" / "last.pt"), "--probabilities", "--out", str(tmp_path / "p.tif")])
    assert rc == 0
    prob = np.asarray(Image.open(tmp_path / "p.tif"))
    assert prob.dtype == np.float32 and prob.shape == (64, 64)
    assert 0 <= prob.min() <= prob.max() <= 1


@pytest.mark.parametrize("args, message", [
    (["--threshold", "nan"], "--threshold must be a finite number"),
    (["--threshold", "1.5"], "--threshold must be in [0.0, 1.0]"),
    (["--out", "DIR"], "is a folder"),
])
def test_predict_options_checked(args, message, checkpoint, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    args = [str(tmp_path) if a == "DIR" else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "m.png")]
    rc = main(["predict", str(tmp_path / "ok.png"), "--checkpoint", str(checkpoint), *args])
    assert rc == 2 and message in capsys.readouterr().err


def test_plan_prints_nnunets_configuration_and_refuses_bad_shapes(capsys):
    assert main(["plan", "--shape", "584", "565"]) == 0
    out = capsys.readouterr().out
    assert "640 x 640" in out and "(7, 7)" in out
    assert main(["plan", "--shape", "256", "200", "--spacing", "1", "3", "--cases", "10"]) == 0
    assert "256 x 224" in capsys.readouterr().out
    assert main(["plan", "--shape", "256", "-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "median_shape" in err[0]
