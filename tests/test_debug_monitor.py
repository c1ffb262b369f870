"""TrainingMonitor: it records every step and finds the first non-finite loss or gradient."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unet_course.debug import TrainingMonitor, gradient_norm


def test_gradient_norm_is_the_norm_of_all_gradients_as_one_vector():
    net = nn.Linear(3, 2)
    assert gradient_norm(net) == 0.0  # before any backward
    net.weight.grad = torch.full((2, 3), 2.0)  # 6 entries of 2 -> sqrt(24)
    net.bias.grad = torch.tensor([1.0, 0.0])  # sqrt(24 + 1) = 5
    assert gradient_norm(net) == pytest.approx(5.0)


def test_the_first_nonfinite_step_is_found_and_explained():
    net = nn.Linear(1, 1)
    monitor = TrainingMonitor(net)
    for value in (0.5, 2.0, 40.0):
        net.weight.grad = torch.tensor([[value]])
        net.bias.grad = torch.zeros(1)
        monitor.record(torch.tensor(value))
    assert monitor.first_nonfinite is None and monitor.explain() == ""
    net.weight.grad = torch.tensor([[math.inf]])
    monitor.record(torch.tensor(math.nan))
    net.weight.grad = torch.tensor([[1.0]])
    monitor.record(torch.tensor(1.0))  # a later finite step does not move the first bad one
    assert monitor.first_nonfinite == 3
    assert monitor.losses[:3] == [0.5, 2.0, 40.0] and monitor.grad_norms[:3] == [0.5, 2.0, 40.0]
    text = monitor.explain()
    assert text.startswith("step 3: loss nan") and "from 0.5 at step 0 to 40 at step 2" in text


def test_raise_on_nonfinite_stops_the_loop_with_the_explanation():
    net = nn.Linear(1, 1)
    monitor = TrainingMonitor(net, raise_on_nonfinite=True)
    net.weight.grad, net.bias.grad = torch.ones(1, 1), torch.ones(1)
    monitor.record(1.0)
    with pytest.raises(FloatingPointError, match="step 1: loss inf.*lower the learning rate"):
        monitor.record(math.inf)
