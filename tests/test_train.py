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


class Counting(torch.utils.data.Dataset):
    """Returns its index as the image value and remembers the epochs it was told."""

    def __init__(self, n=5):
        self.n, self.epochs, self.seen = n, [], []

    def __len__(self):
        return self.n

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __getitem__(self, i):
        self.seen.append(i)
        return torch.zeros(1, 44, 44), torch.zeros(4, 4, dtype=torch.long)


def test_each_epoch_sees_every_item_once_and_new_tiles():
    data = Counting(5)
    fit(small_net(), data, steps=10, progress=False)
    assert sorted(data.seen[:5]) == sorted(data.seen[5:]) == list(range(5))
    assert data.epochs == [0, 1]


def test_warmup_and_poly_schedule_set_the_rate():
    from unet_course.train import _lr_factor

    assert _lr_factor(0, 4, "constant", 0.0) == 0.25
    assert _lr_factor(3, 4, "constant", 0.0) == 1.0
    assert _lr_factor(10, 0, "poly", 0.5) == pytest.approx(0.5**0.9)
    rates = []
    fit(small_net(), Tiles(), steps=20, lr=0.01, warmup=5, lr_schedule="poly", log_every=1,
        callbacks=[lambda e: rates.append(e.get("lr"))], progress=False)
    assert rates[0] == pytest.approx(0.002) and rates[4] < 0.01 and rates[-1] < rates[5]


def test_time_budget_stops_early_and_checkpoints(tmp_path):
    history = fit(small_net(), Tiles(), steps=10**6, time_budget=0.5, checkpoint_dir=tmp_path,
                  progress=False)
    assert 0 < len(history.loss) < 10**6
    assert load_checkpoint(tmp_path / "last.pt")["step"] == len(history.loss)


def test_grad_clip_bounds_the_step():
    net = small_net()
    before = [p.detach().clone() for p in net.parameters()]
    fit(net, Tiles(), steps=1, optimizer="sgd", lr=1.0, momentum=0.0, grad_clip=1e-3,
        progress=False)
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(net.parameters(), before)))
    assert moved <= 1e-3 + 1e-6


@pytest.mark.parametrize("kwargs, message", [
    ({"warmup": -1}, "warmup"), ({"grad_clip": 0}, "grad_clip"),
    ({"lr_schedule": "cosine"}, "lr_schedule"), ({"time_budget": 0}, "time_budget"),
])
def test_bad_schedule_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(small_net(), Tiles(), steps=1, progress=False, **kwargs)


def test_ctrl_c_keeps_a_checkpoint(tmp_path):
    def interrupt(event):
        if event.get("step") == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(small_net(), Tiles(), steps=10, log_every=1, callbacks=[interrupt],
            checkpoint_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3


def test_divergence_carries_the_history():
    with pytest.raises(FloatingPointError) as info:
        fit(small_net(), Tiles(), steps=200, lr=1e6, momentum=0.99, progress=False)
    assert info.value.step == len(info.value.history.loss) + 1
