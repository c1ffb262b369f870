"""The CLI as a user runs it: every problem the user can fix is one line on stderr, no traceback.

Each case runs ``python -m unet_course`` in a subprocess (as a user would) where the brief asks
for it; the cheaper in-process cases call ``main`` and read stderr with capsys.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import unet_course._cli_predict as cli_predict
from unet_course.__main__ import main
from unet_course.model import UNet
from unet_course.train import save_checkpoint


def tiny(depth=2):
    """Options of a small, fast run: 3 synthetic 64 x 64 images, a U-Net of depth ``depth``."""
    return ["--images", "3", "--size", "64", "--depth", str(depth), "--base-channels", "4",
            "--tile", "32"]


TINY = tiny()


def run_cli(*args, env=None):
    """(exit status, stderr) of ``python -m unet_course ARGS``."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run([sys.executable, "-m", "unet_course", *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=300)
    return done.returncode, done.stderr


def error_line(stderr: str) -> str:
    """The one error line, after asserting that there is exactly one and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A folder with a tiny trained checkpoint last.pt (depth 2, 4 channels) and an image."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--steps", "2", "--out", str(out)]) == 0
    Image.fromarray((np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)).save(out / "in.png")
    return out


def edited_checkpoint(run, tmp_path, name, edit):
    ckpt = torch.load(run / "last.pt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name


# ------------------------------------------------------------------ checkpoints that do not fit
def test_checkpoint_with_a_missing_entry(run, tmp_path):
    path = edited_checkpoint(run, tmp_path, "nokey.pt", lambda c: c.pop("model_class"))
    rc, err = run_cli("predict", run / "in.png", "--checkpoint", path, "--out", tmp_path / "m.png")
    assert rc == 2 and str(path) in error_line(err) and "model_class" in err


def test_checkpoint_whose_config_does_not_match_its_weights(run, tmp_path):
    path = edited_checkpoint(run, tmp_path, "mismatch.pt",
                             lambda c: c["config"].update(base_channels=8))
    rc, err = run_cli("predict", run / "in.png", "--checkpoint", path, "--out", tmp_path / "m.png")
    assert rc == 2 and str(path) in error_line(err)


def test_checkpoint_of_a_one_class_network(run, tmp_path):
    save_checkpoint(tmp_path / "one.pt", UNet(num_classes=1, depth=2, base_channels=4, padding="same"))
    rc, err = run_cli("predict", run / "in.png", "--checkpoint", tmp_path / "one.pt",
                      "--out", tmp_path / "m.png")
    assert rc == 2 and "num_classes=1" in error_line(err)


def test_resume_with_another_architecture(run):
    rc, err = run_cli("train", *tiny(depth=3), "--steps", "4", "--out", run, "--resume")
    line = error_line(err)
    assert rc == 2 and "depth=2 there but 3 now" in line and "new --out" in line


def test_resume_with_another_optimizer(run, capsys):
    rc = main(["train", *TINY, "--steps", "4", "--optimizer", "sgd", "--out", str(run), "--resume"])
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and "optimizer='adam' there but 'sgd' now" in line


def test_resume_from_a_checkpoint_without_its_step(run, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    edited_checkpoint(run, tmp_path / "r", "last.pt", lambda c: c.pop("step"))
    rc = main(["train", *TINY, "--steps", "4", "--out", str(tmp_path / "r"), "--resume"])
    line = error_line(capsys.readouterr().err)  # said by load_checkpoint or by the CLI
    assert rc == 2 and str(tmp_path / "r" / "last.pt") in line and "step" in line


# ------------------------------------------------------------------ training that diverges
def test_huge_learning_rate_is_one_line(tmp_path):
    rc, err = run_cli("train", *TINY, "--steps", "3", "--lr", "1e30", "--out", tmp_path)
    assert rc == 2 and "lr" in error_line(err)


def test_a_diverged_network_is_neither_scored_nor_used(run, tmp_path, capsys):
    # one step: the loss of step 1 is finite, but the update blows the weights up
    rc = main(["train", *TINY, "--steps", "1", "--lr", "1e30", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    line = error_line(captured.err)
    assert rc == 2 and "NaN" in line and "learning rate" in line and "held out (1" not in captured.out
    rc = main(["predict", str(run / "in.png"), "--checkpoint", str(tmp_path / "last.pt"),
               "--out", str(tmp_path / "m.png")])
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and "gives NaN" in line and "--lr" in line and not (tmp_path / "m.png").exists()
    model = UNet(depth=2, base_channels=4, padding="same")
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", model)
    rc = main(["predict", str(run / "in.png"), "--checkpoint", str(tmp_path / "nan.pt"),
               "--out", str(tmp_path / "m.png")])
    assert rc == 2 and "NaN or inf in 1 weight tensor(s) (first: head.bias)" in error_line(
        capsys.readouterr().err)


def test_one_image_says_it_is_held_out(tmp_path):
    rc, err = run_cli("train", "--images", "1", "--size", "64", "--steps", "1", "--out", tmp_path)
    line = error_line(err)
    assert rc == 2 and "out for validation" in line and "at least 2 images" in line
    assert "--val-fraction 0 " in line


@pytest.mark.parametrize("option, value, message", [
    ("--checkpoint-every", "0", "--checkpoint-every must be an int >= 1"),
    ("--batch-size", "0", "--batch-size must be an int >= 1"),
    ("--lr", "nan", "--lr (the learning rate) must be a finite number"),
    ("--lr", "-1", "--lr (the learning rate) must be in (0.0, inf)"),
    ("--time-budget", "0", "--time-budget (minutes) must be in (0.0, inf)"),
    ("--images", "-2", "--images (the number of synthetic images) must be an int >= 1"),
    ("--val-fraction", "1", "--val-fraction must be a probability in [0, 1)"),
])
def test_train_options_are_checked_before_training(option, value, message, tmp_path, capsys):
    args = ["train", *TINY, "--steps", "1", "--out", str(tmp_path)]
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in error_line(captured.err) and "training on" not in captured.out


# ------------------------------------------------------------------ the device
def test_bad_device_variable_names_it(tmp_path):
    rc, err = run_cli("train", *TINY, "--steps", "1", "--out", tmp_path,
                      env={"UNET_COURSE_DEVICE": "bogus"})
    assert rc == 2 and "UNET_COURSE_DEVICE='bogus' is not a device name" in error_line(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_names_the_variable(run, tmp_path):
    rc, err = run_cli("predict", run / "in.png", "--checkpoint", run / "last.pt",
                      "--out", tmp_path / "m.png", env={"UNET_COURSE_DEVICE": "cuda"})
    line = error_line(err)
    assert rc == 2 and "UNET_COURSE_DEVICE='cuda'" in line and "no CUDA device" in line


def test_bad_device_option_names_it(run, tmp_path, capsys):
    rc = main(["predict", str(run / "in.png"), "--checkpoint", str(run / "last.pt"),
               "--out", str(tmp_path / "m.png"), "--device", "meta"])
    assert rc == 2 and "--device='meta'" in error_line(capsys.readouterr().err)


def test_train_computes_on_the_chosen_device(monkeypatch, tmp_path, capsys):
    import unet_course.presets

    seen = {}

    def fake_train(preset, *args, device=None, **kwargs):
        seen.update(preset=preset.name, device=device)
        raise ValueError("stop here")

    monkeypatch.setattr(unet_course.presets, "train", fake_train)
    monkeypatch.setenv("UNET_COURSE_DEVICE", "cpu")
    assert main(["train", *TINY, "--steps", "1", "--out", str(tmp_path)]) == 2
    assert seen == {"preset": "cpu", "device": torch.device("cpu")}
    # with a (pretend) GPU and no variable, train runs there with the paper's recipe
    monkeypatch.delenv("UNET_COURSE_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["train", *TINY, "--steps", "1", "--out", str(tmp_path)]) == 2
    assert seen == {"preset": "paper", "device": torch.device("cuda")}
    assert main(["train", *TINY, "--steps", "1", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert seen == {"preset": "cpu", "device": torch.device("cpu")}
    assert "preset cpu on cpu:" in capsys.readouterr().out


# ------------------------------------------------------------------ what is not the user's fault
def test_out_of_memory_suggests_a_smaller_tile(monkeypatch, run, tmp_path, capsys):
    def no_memory(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(cli_predict, "_predict", no_memory)
    rc = main(["predict", str(run / "in.png"), "--checkpoint", str(run / "last.pt"),
               "--out", str(tmp_path / "m.png")])
    line = error_line(capsys.readouterr().err)
    assert rc == 2 and "out of memory" in line and "--tile-size" in line


def test_a_failed_cpu_allocation_is_out_of_memory_not_a_bug(monkeypatch, run, tmp_path, capsys):
    def no_memory(args):
        torch.empty(2**62, dtype=torch.uint8)  # 4 EiB: torch's CPU allocator refuses it

    monkeypatch.setattr(cli_predict, "_predict", no_memory)
    rc = main(["predict", str(run / "in.png"), "--checkpoint", str(run / "last.pt"),
               "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = error_line(err)
    assert "out of memory" in line and "--tile-size" in line


def test_a_bug_keeps_its_traceback_and_asks_for_a_report(monkeypatch, run, tmp_path, capsys):
    def bug(args):
        return {}["no such key"]

    monkeypatch.setattr(cli_predict, "_predict", bug)
    rc = main(["predict", str(run / "in.png"), "--checkpoint", str(run / "last.pt"),
               "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" in err and "KeyError" in err
    assert "is a bug in unet_course" in err.splitlines()[-1]


def test_what_a_checkpoint_raises_becomes_one_value_error():
    from unet_course._cli_errors import checkpoint_problems

    with pytest.raises(ValueError, match=r"^--checkpoint f.pt is not .* it has no 'config' entry"):
        with checkpoint_problems("f.pt", "--checkpoint"):
            raise KeyError("config")
    mismatch = RuntimeError("Error(s) in loading state_dict for UNet:\n\tsize mismatch for inc.0.weight")
    with pytest.raises(ValueError, match="weights do not fit .* size mismatch for inc.0.weight") as info:
        with checkpoint_problems("f.pt", "--checkpoint"):
            raise mismatch
    assert "\n" not in str(info.value)
    with pytest.raises(torch.OutOfMemoryError):  # not the file's fault: left to exit_status
        with checkpoint_problems("f.pt", "--checkpoint"):
            raise torch.OutOfMemoryError("CUDA out of memory")
