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


@pytest.mark.parametrize("value, message", [
    ("bogus", "UNET_COURSE_DEVICE='bogus' is not a device name; use cpu, cuda"),
    ("cuda:x", "UNET_COURSE_DEVICE='cuda:x' is not a device name"),
    ("meta", "UNET_COURSE_DEVICE='meta': the course computes on cpu, cuda or mps"),
])
def test_bad_device_names_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("UNET_COURSE_DEVICE", value)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        device()


def test_device_argument_wins_and_is_named_in_errors(monkeypatch):
    monkeypatch.setenv("UNET_COURSE_DEVICE", "bogus")
    assert device("CPU") == torch.device("cpu")  # the argument wins; case does not matter
    assert device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(TypeError, match="device must be a device name"):
        device(0)
    with pytest.raises(ValueError, match="--device='gpu' is not a device name"):
        device("gpu", option="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"CUDA device 2, but this machine has 2 \(cuda:0 to cuda:1\)"):
        device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda' asks for CUDA, but no CUDA device"):
        device("cuda")
