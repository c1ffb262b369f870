import numpy as np
import pytest
import torch

from unet_course import by_profile, device, profile, seed_everything


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("UNET_COURSE_PROFILE", "full")
    assert profile() == "full" and by_profile(quick=1, full=2) == 2
    monkeypatch.setenv("UNET_COURSE_PROFILE", " Quick ")
    assert profile() == "quick" and by_profile(quick=1, full=2) == 1


def test_profile_default_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("UNET_COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profile() == "full"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profile() == "quick"


def test_bad_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv("UNET_COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick, full"):
        profile()


def test_device(monkeypatch):
    monkeypatch.delenv("UNET_COURSE_DEVICE", raising=False)
    assert device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("UNET_COURSE_DEVICE", "cpu")
    assert device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("UNET_COURSE_DEVICE", "cuda:3")
        with pytest.raises(ValueError, match="no CUDA device"):
            device()


def test_seed_everything_repeats_every_generator():
    def draw():
        rng = seed_everything(7)
        return np.random.rand(3), torch.rand(3), rng.random(3)

    a, b = draw(), draw()
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="non-negative integer"):
        seed_everything(-1)
