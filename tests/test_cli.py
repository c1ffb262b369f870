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
                   "--lr", "--tile", "--seed"):
        assert option in out
    out = subprocess.run([sys.executable, "-m", "unet_course", "predict", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--checkpoint" in out and "--out" in out and "image" in out


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
    assert "held out: pixel_error" in capsys.readouterr().out


def test_predict_any_image_size(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((77, 93)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    rc = main(["predict", str(tmp_path / "in.png"), "--checkpoint", str(checkpoint),
               "--out", str(tmp_path / "mask.png")])
    assert rc == 0
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (77, 93) and set(np.unique(mask)) <= {0, 255}


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
