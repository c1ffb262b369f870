"""Checkpoint files of every kind a user may hand the course, and the temporary files of a save.

* a file that holds code (a whole pickled model, other pickled objects) is named as such and
  the advice never includes loading it with ``weights_only=False``;
* a legacy (pre-zip) torch file is read when it holds only tensors and named when it does not;
  a raw ``pickle.dump`` file is not called truncated;
* ``NestedUNet``'s pruning survives a checkpoint;
* the temporary files of a save killed mid-write are removed by the next save.

The command-line cases run ``python -m unet_course`` in a subprocess, as a user would.
"""

import os
import pickle
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course import UNet
from unet_course.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from unet_course.variants import NestedUNet

LEGACY = {"_use_new_zipfile_serialization": False}


def small_net():
    torch.manual_seed(0)
    return UNet(depth=2, base_channels=4, padding="same")


def refusal(path) -> str:
    """The message of the CheckpointError that loading ``path`` raises; no warning on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's warnings would be extra lines on the CLI's stderr
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
    return str(info.value).replace(str(path), "PATH")  # tmp_path holds the test's name


def assert_no_unsafe_advice(text: str) -> None:
    assert "weights_only=False" not in text and "corrupted" not in text
    assert "do not load it" in text  # the advice for a file of unknown origin


# ------------------------------------------------------------------ 9a: files that hold code
def test_a_whole_pickled_model_is_called_code_and_never_loaded_unsafely(tmp_path):
    torch.save(small_net(), tmp_path / "whole.pt")
    text = refusal(tmp_path / "whole.pt")
    assert_no_unsafe_advice(text)
    assert "whole pickled model" in text and "holds code" in text and "runs that code" in text
    assert "unet_course.model.UNet" in text and "torch.nn.modules." in text  # the globals named
    assert "if you made it yourself" in text.lower()
    assert "torch.save(model.state_dict(), path)" in text


def test_other_pickled_objects_are_called_code_too(tmp_path):
    torch.save({"mean": np.zeros(3)}, tmp_path / "arrays.pt")
    text = refusal(tmp_path / "arrays.pt")
    assert_no_unsafe_advice(text)
    assert "holds code" in text and re.search(r"numpy\.\S*_reconstruct", text)


# ------------------------------------------------------------------ 9b: legacy files, raw pickles
def test_a_legacy_checkpoint_holding_only_tensors_loads(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", small_net())
    torch.save(torch.load(path, weights_only=True), tmp_path / "legacy.pt", **LEGACY)
    assert (tmp_path / "legacy.pt").read_bytes()[:2] == b"\x80\x02"  # really the old format
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(load_model(tmp_path / "legacy.pt")(x), small_net().eval()(x))


def test_a_legacy_whole_model_is_named_not_called_corrupted(tmp_path):
    torch.save(small_net(), tmp_path / "legacy.pt", **LEGACY)
    text = refusal(tmp_path / "legacy.pt")
    assert_no_unsafe_advice(text)
    assert "legacy" in text and "whole pickled model" in text and "unet_course.model.UNet" in text


def test_a_truncated_legacy_file_says_so(tmp_path):
    torch.save({"w": torch.zeros(100)}, tmp_path / "full.pt", **LEGACY)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:120])
    text = refusal(tmp_path / "cut.pt")
    assert "legacy" in text and "truncated or corrupted" in text


def test_a_raw_pickle_of_plain_values_is_not_a_torch_file(tmp_path):
    with open(tmp_path / "raw.pkl", "wb") as f:
        pickle.dump({"step": 3, "lr": 0.01}, f)
    text = refusal(tmp_path / "raw.pkl")
    assert "pickle.dump" in text and "not a torch checkpoint" in text and "corrupted" not in text
    assert "save_checkpoint" in text


def test_a_raw_pickle_naming_globals_is_called_code(tmp_path):
    with open(tmp_path / "raw.pkl", "wb") as f:
        # protocol 4 fetches a repeated module name from the memo: the names must still be right
        pickle.dump({"kind": np.dtype("f4"), "weights": np.zeros(3)}, f, protocol=4)
    text = refusal(tmp_path / "raw.pkl")
    assert_no_unsafe_advice(text)
    assert "pickle.dump" in text and "holds code" in text
    assert "numpy.dtype" in text and "numpy.ndarray" in text and "dtype.ndarray" not in text


def test_a_file_that_is_no_pickle_at_all_says_what_it_starts_with(tmp_path):
    (tmp_path / "notes.pt").write_text("step 3\n")
    assert "neither" in refusal(tmp_path / "notes.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "is empty" in refusal(tmp_path / "empty.pt")


# ------------------------------------------------------------------ 9c: NestedUNet's pruning
@pytest.mark.parametrize("how", ["constructor", "attribute"])
def test_a_pruned_nested_unet_comes_back_pruned(tmp_path, how):
    torch.manual_seed(0)
    if how == "constructor":
        net = NestedUNet(1, 2, depth=3, base_channels=4, deep_supervision=True, prune=1)
    else:
        net = NestedUNet(1, 2, depth=3, base_channels=4, deep_supervision=True)
        net.prune = 1
    save_checkpoint(tmp_path / "c.pt", net)
    again = load_model(tmp_path / "c.pt")
    assert again.prune == 1 and again.config["prune"] == 1
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(net.eval()(x), again(x))


def test_nested_unet_checks_prune_when_it_is_set():
    net = NestedUNet(1, 2, depth=2, base_channels=4)
    assert net.prune == 2 and net.config["prune"] == 2  # the whole net by default
    with pytest.raises(ValueError, match="prune must be an int >= 1"):
        net.prune = 0
    with pytest.raises(ValueError, match="prune must be in 1..2"):
        net.prune = 3
    with pytest.raises(ValueError, match="prune must be in 1..2"):
        NestedUNet(1, 2, depth=2, base_channels=4, prune=5)
    assert net.prune == 2


def test_a_checkpoint_of_a_nested_unet_without_prune_is_the_whole_net(tmp_path):
    """Checkpoints written before ``prune`` was stored rebuild the whole net, as they did."""
    path = save_checkpoint(tmp_path / "c.pt", NestedUNet(1, 2, depth=2, base_channels=4))
    payload = torch.load(path, weights_only=True)
    del payload["config"]["prune"]
    torch.save(payload, path)
    assert load_model(path).prune == 2


# ------------------------------------------------------------------ 9d: temporary files
def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.skipif(os.name == "nt", reason="the PID check is for POSIX systems")
def test_a_save_removes_stale_temporary_files_of_the_same_checkpoint(tmp_path):
    pid = dead_pid()
    stale = [tmp_path / f".last.pt.{pid}.0123abcd.tmp",  # its writer has exited
             tmp_path / ".last.pt.89abcdef.tmp"]  # an older version's name, an hour old
    kept = [tmp_path / f".last.pt.{os.getpid()}.0badf00d.tmp",  # a live writer (this process)
            tmp_path / f".last.pt.{pid}.fedcba98.tmp",  # just written: maybe another machine's
            tmp_path / f".best.pt.{pid}.0123abcd.tmp",  # another checkpoint's
            tmp_path / "notes.tmp", tmp_path / ".last.pt.backup"]  # the user's
    for p in stale + kept:
        p.write_bytes(b"x")
        age(p, 3600 if p.name != f".last.pt.{pid}.fedcba98.tmp" else 5)
    age(kept[0], 120)  # recent enough for a live writer: older temp files are dead ones
    save_checkpoint(tmp_path / "last.pt", small_net())
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"last.pt", *(p.name for p in kept)}


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_the_temporary_file_of_a_killed_save_is_removed_by_the_next_one(tmp_path):
    writer = ("import sys, time\n"
              "from pathlib import Path\n"
              "from unet_course.checkpoint import _write_atomically\n"
              "def write(f):\n"
              "    f.write(b'PK' * 1000); f.flush(); time.sleep(60)\n"
              "_write_atomically(Path(sys.argv[1]), write)\n")
    child = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path / "last.pt")])
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".last.pt.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp,) = tmp_path.glob(".last.pt.*.tmp")
        assert f".{child.pid}." in tmp.name  # the writer's PID is in the name
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    age(tmp, 120)
    save_checkpoint(tmp_path / "last.pt", small_net())
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# ------------------------------------------------------------------ the command line
def run_cli(*args):
    """(exit status, stderr) of ``python -m unet_course ARGS``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "unet_course", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)
    return done.returncode, done.stderr


def write_whole(path):
    torch.save(small_net(), path)


def write_legacy_whole(path):
    torch.save(small_net(), path, **LEGACY)


def write_raw_pickle(path):
    with open(path, "wb") as f:
        pickle.dump({"weights": np.zeros(3)}, f)


@pytest.mark.parametrize("write, words", [
    (write_whole, "whole pickled model"), (write_legacy_whole, "legacy"),
    (write_raw_pickle, "pickle.dump")], ids=["whole", "legacy-whole", "raw-pickle"])
@pytest.mark.parametrize("command", ["predict", "train"])
def test_the_cli_says_one_line_for_each_kind_of_file(tmp_path, write, words, command):
    write(tmp_path / "last.pt")
    if command == "predict":
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "in.png")
        rc, err = run_cli("predict", tmp_path / "in.png", "--checkpoint", tmp_path / "last.pt",
                          "--out", tmp_path / "m.png")
    else:
        rc, err = run_cli("train", "--images", "2", "--size", "64", "--depth", "2",
                          "--base-channels", "4", "--tile", "32", "--steps", "1",
                          "--out", tmp_path, "--resume")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert str(tmp_path / "last.pt") in lines[0] and words in lines[0]
    assert "weights_only=False" not in lines[0] and "corrupted" not in lines[0]
