"""fit, evaluate and checkpoints: the paper's defaults, exact resume, clear errors."""

import numpy as np
import pytest
import torch

from unet_course import UNet
from unet_course.train import (
    CheckpointError,
    evaluate,
    fit,
    load_checkpoint,
    load_model,
    save_checkpoint,
)


class Tiles(torch.utils.data.Dataset):
    """Random tiles with an augmentation that uses the dataset's own generator (like a real one)."""

    def __init__(self, n=5, edge=44, out=4, weights=False, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, edge, edge, generator=g)
        self.y = torch.randint(0, 2, (n, out, out), generator=g)
        self.w = torch.rand(n, out, out, generator=g) + 0.5 if weights else None
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i] + float(self.rng.normal(0, 0.01))  # randomness that resume must restore
        return (x, self.y[i]) if self.w is None else (x, self.y[i], self.w[i])


def small_net():
    torch.manual_seed(0)
    return UNet(depth=2, base_channels=4, dropout=0.5)  # dropout: the global RNG matters too


def test_fit_uses_the_papers_defaults_and_lowers_the_loss():
    net = small_net()
    data = Tiles(n=2, weights=True)
    history = fit(net, data, steps=60, lr=0.01, progress=False)
    assert len(history.loss) == 60 and history.steps[-1] == 60
    assert np.mean(history.loss[-10:]) < np.mean(history.loss[:10])
    assert not net.training


def test_resume_is_bit_identical(tmp_path):
    straight = small_net()
    fit(straight, Tiles(), steps=8, progress=False)

    first = small_net()
    fit(first, Tiles(), steps=4, checkpoint_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4
    resumed = small_net()
    history = fit(resumed, Tiles(), steps=8, resume=tmp_path / "last.pt", checkpoint_dir=tmp_path,
                  progress=False)
    assert history.steps == list(range(1, 9))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_round_trip_and_weights_only(tmp_path):
    net = small_net()
    path = save_checkpoint(tmp_path / "c.pt", net, step=3, note="hello")
    ckpt = torch.load(path, weights_only=True)  # readable without unpickling code
    assert ckpt["config"]["base_channels"] == 4 and ckpt["step"] == 3 and ckpt["extra"] == {"note": "hello"}
    again = load_model(path)
    x = torch.rand(1, 1, 44, 44)
    assert torch.equal(net.eval()(x), again(x))


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    net = small_net()
    path = save_checkpoint(tmp_path / "last.pt", net, step=1)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, net, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_damaged_or_missing_checkpoints_give_clear_errors(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", small_net())
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt is truncated or corrupted"):
        load_checkpoint(tmp_path / "truncated.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a unet_course checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_non_finite_loss_names_the_step():
    data = Tiles(n=1)
    data.x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="at step 1.*learning rate"):
        fit(small_net(), data, steps=3, progress=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        fit(small_net(), Tiles(), steps=1, optimizer="rmsprop", progress=False)
    with pytest.raises(ValueError, match="steps"):
        fit(small_net(), Tiles(), steps=0, progress=False)
    with pytest.raises(ValueError, match="amp=True needs a CUDA device"):
        fit(small_net(), Tiles(), steps=1, amp=True, device="cpu", progress=False)


def test_evaluate_predicts_whole_images_of_any_size():
    net = small_net().eval()
    images = [np.random.default_rng(0).random((37, 53), dtype=np.float32)]
    masks = [np.ones((37, 53), np.int64)]
    metrics = evaluate(net, images, masks)
    assert set(metrics) == {"pixel_error", "rand_error", "iou", "dice"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    with pytest.raises(ValueError, match="1 images but 2 masks"):
        evaluate(net, images, masks * 2)
