"""Issue 14, training side: fit in named steps, checkpoints that never fail silently, timing.

Each test here pins a bug that was fixed or an error that used to be misleading.
"""

import os
import stat

import numpy as np
import pytest
import torch

from unet_course import UNet
from unet_course.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from unet_course.data import TileDataset, synthetic_em
from unet_course.train import fit


def small_net(**kw):
    torch.manual_seed(0)
    return UNet(depth=2, base_channels=4, dropout=0.5, **kw)


def tiles(length=6, seed=3):
    images, masks, _ = synthetic_em(3, size=64, seed=0)
    return TileDataset(images, masks, 44, 4, length=length, seed=seed)


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# --------------------------------------------------------------------------- old names
def test_checkpoint_names_stay_importable_from_train():
    import unet_course.checkpoint as ckpt
    import unet_course.train as train

    for name in ("save_checkpoint", "load_checkpoint", "load_model", "CheckpointError",
                 "CHECKPOINT_FORMAT"):
        assert getattr(train, name) is getattr(ckpt, name)
    from unet_course.train import _lr_factor  # noqa: F401  (the old private name, still there)


# --------------------------------------------------------------------------- resume
def test_resume_from_a_mid_run_checkpoint_keeps_the_schedule(tmp_path):
    """A checkpoint written mid-run (here: Ctrl-C) stored the *scheduled* rate as the base
    rate, so a resumed run with warm-up or poly decay scaled it twice and trained differently."""
    options = dict(steps=10, lr=0.01, warmup=8, lr_schedule="poly", progress=False, log_every=1)
    straight = small_net()
    fit(straight, tiles(), **options)

    def stop_at_4(event):
        if event.get("step") == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(small_net(), tiles(), checkpoint_dir=tmp_path, callbacks=[stop_at_4], **options)
    assert load_checkpoint(tmp_path / "last.pt")["optimizer"]["param_groups"][0]["lr"] == 0.01
    resumed = small_net()
    fit(resumed, tiles(), resume=tmp_path / "last.pt", **options)
    assert same_weights(straight, resumed)


def test_resume_with_a_tile_dataset_is_bit_identical(tmp_path):
    """TileDataset has no ``rng``: tiles come from (seed, epoch, index); resume re-sets the epoch."""
    straight = small_net()
    fit(straight, tiles(length=3), steps=8, progress=False)
    fit(small_net(), tiles(length=3), steps=5, checkpoint_dir=tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "last.pt")["rng"]
    assert set(state) <= {"torch", "python", "numpy", "cuda"}  # nothing saved that is not used
    resumed = small_net()
    fit(resumed, tiles(length=3), steps=8, resume=tmp_path / "last.pt", progress=False)
    assert same_weights(straight, resumed)


class OwnRng(torch.utils.data.Dataset):
    def __init__(self):
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return 3

    def __getitem__(self, i):
        image = torch.full((1, 44, 44), float(self.rng.random()))
        return image, torch.zeros(4, 4, dtype=torch.long)


def test_resume_warns_when_the_datasets_own_generator_cannot_be_restored(tmp_path):
    fit(small_net(), tiles(length=3), steps=2, checkpoint_dir=tmp_path, progress=False)
    with pytest.warns(RuntimeWarning, match="OwnRng.rng"):
        fit(small_net(), OwnRng(), steps=3, resume=tmp_path / "last.pt", progress=False)


def test_resume_with_another_architecture_or_optimizer_says_so(tmp_path):
    fit(small_net(), tiles(), steps=2, checkpoint_dir=tmp_path, progress=False)
    torch.manual_seed(0)
    wider = UNet(depth=2, base_channels=8)
    with pytest.raises(CheckpointError, match="do not fit this UNet.*another shape"):
        fit(wider, tiles(), steps=4, resume=tmp_path / "last.pt", progress=False)
    with pytest.raises(CheckpointError, match="trained with SGD, not Adam.*optimizer='sgd'"):
        fit(small_net(), tiles(), steps=4, optimizer="adam", resume=tmp_path / "last.pt",
            progress=False)


# --------------------------------------------------------------------------- checkpoints
def test_checkpoints_get_the_usual_file_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "c.pt", small_net())
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # 0666 & ~umask, not mkstemp's 0600
        os.umask(0o077)
        path = save_checkpoint(tmp_path / "c.pt", small_net())  # replacing an existing file
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_a_whole_pickled_model_is_named_not_called_corrupted(tmp_path):
    torch.save(small_net(), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "whole.pt")
    text = str(info.value)
    assert "whole pickled model (unet_course.model.UNet" in text and "corrupted" not in text
    # never advise running the file's code (tests/test_checkpoint_safety.py): re-save instead
    assert "weights_only=False" not in text and "save_checkpoint(" in text
    # The advice works: saved again from the session that holds the model, it loads.
    model = small_net()
    save_checkpoint(tmp_path / "converted.pt", model)
    assert same_weights(load_model(tmp_path / "converted.pt"), model)


def test_other_pickled_objects_are_named(tmp_path):
    torch.save({"mean": np.zeros(3)}, tmp_path / "arrays.pt")
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(numpy"):
        load_checkpoint(tmp_path / "arrays.pt")


def test_missing_keys_are_named(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", small_net())
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"], payload["step"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="lacks the keys state_dict, step"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config_say_so(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", small_net())
    payload = torch.load(path, weights_only=True)
    payload["config"]["base_channels"] = 8
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit this UNet.*size mismatch"):
        load_model(path)
    payload["config"]["colour"] = "red"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not build a UNet"):
        load_model(path)


# --------------------------------------------------------------------------- fit's arguments
@pytest.mark.parametrize("kwargs, error, message", [
    ({"log_every": 0}, ValueError, "log_every must be an int >= 1"),
    ({"steps": 2.5}, TypeError, "steps must be an int"),
    ({"lr": -1.0}, ValueError, "lr must be in"),
    ({"momentum": 1.5}, ValueError, "momentum must be in"),
    ({"val_every": 2}, ValueError, "val_every=2 does nothing without val_data"),
    ({"checkpoint_every": 2}, ValueError, "checkpoint_every=2 does nothing without checkpoint_dir"),
    ({"val_data": ([np.zeros((8, 8))], [])}, ValueError, "val_data is given but val_every is not"),
    ({"val_data": ([np.zeros((8, 8))], []), "val_every": 1}, ValueError, "1 images and 0 masks"),
    ({"callbacks": ["print"]}, TypeError, "each callback must be a function"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0"),
])
def test_fit_rejects_bad_arguments_before_training(kwargs, error, message):
    net = small_net()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(error, match=message):
        fit(net, tiles(), steps=kwargs.pop("steps", 3), progress=False, **kwargs)
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))


def test_steps_may_be_a_numpy_integer():
    history = fit(small_net(), tiles(), steps=np.int64(2), progress=False)
    assert history.steps == [1, 2]


def test_items_with_and_without_weight_maps_do_not_mix():
    """The weight map of a batch used to be dropped silently when its first item had none."""
    class Mixed(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            x, y = torch.rand(1, 44, 44), torch.zeros(4, 4, dtype=torch.long)
            return (x, y, None) if i == 0 else (x, y, torch.ones(4, 4))

    with pytest.raises(ValueError, match="some training items carry a weight map"):
        fit(small_net(), Mixed(), steps=1, batch_size=2, progress=False)


def test_validation_leaves_the_model_training():
    """After each validation, every module is back in the mode it trained in."""
    images, masks, _ = synthetic_em(1, size=64, seed=1)
    seen = []
    net = small_net()
    fit(net, tiles(), (images, masks), steps=2, val_every=1, progress=False,
        callbacks=[lambda e: seen.append(all(m.training for m in net.modules()))])
    assert seen == [True] * 3 and not net.training  # two validations, one log (the last step)


def test_preset_train_checks_its_arrays_first():
    from unet_course.presets import train

    images, masks, instances = synthetic_em(2, size=64, seed=0)
    with pytest.raises(ValueError, match="2 images and 1 masks"):
        train("cpu", images, masks[:1], steps=1, progress=False)
    with pytest.raises(ValueError, match="got 1 for 2 images"):
        train("cpu", images, masks, instances[:1], steps=1, progress=False)
    with pytest.raises(ValueError, match="0 images"):
        train("cpu", [], [], steps=1, progress=False)


# --------------------------------------------------------------------------- timing
def test_best_time_returns_the_fastest_run_and_runs_the_warmup_untimed():
    from unet_course.timing import best_time, torch_threads

    calls = []
    seconds = best_time(lambda: calls.append(1), 3, warmup=2)
    assert len(calls) == 5 and isinstance(seconds, float) and seconds >= 0.0
    with pytest.raises(ValueError, match="repeat must be an int >= 1"):
        best_time(lambda: None, 0)
    with pytest.raises(TypeError, match="function of no arguments"):
        best_time(42)
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    from unet_course.experiments import torch_threads as old_place

    assert old_place is torch_threads
