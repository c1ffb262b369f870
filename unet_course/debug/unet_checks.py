"""Does a U-Net class behave like the paper's? Five checks that say what fails, not why (lesson 07).

:func:`check_unet` composes one function per property: it builds (:func:`_check_builds`), it has
the paper's parameter count (:func:`_check_parameters`), its forward pass returns a tensor
(:func:`_check_output`) of the right shape for several valid input sizes
(:func:`_check_shapes`), and the gradient reaches its first layer (:func:`_check_gradient`).
The :class:`UNetReport` lists each check's verdict. Re-exported from :mod:`unet_course.debug`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..validation import int_pair, kept_mode

__all__ = ["CHECK_NAMES", "PAPER_PARAMETERS", "Check", "UNetReport", "check_unet"]

#: Parameters of the paper's network: 1 input channel, 2 classes, widths 64 ... 1024.
PAPER_PARAMETERS = 31_030_658


@dataclass
class Check:
    """One property checked by :func:`check_unet`: its name, ``"pass"``/``"fail"``/``"skip"``,
    and what was observed."""

    name: str
    status: str
    detail: str


class UNetReport:
    """What :func:`check_unet` found. ``ok`` is True when no check failed; ``failed`` lists
    the names of the failing checks (``"builds"``, ``"parameters"``, ``"output"``,
    ``"shapes"``, ``"gradient"``)."""

    def __init__(self, title: str, checks: list[Check]):
        self.title, self.checks = title, checks

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def __str__(self) -> str:
        n_fail = len(self.failed)
        verdict = "all checks pass" if self.ok else f"{n_fail} of {len(self.checks)} checks fail"
        lines = [f"check_unet({self.title}): {verdict}"]
        for c in self.checks:
            detail = c.detail.replace("\n", "\n" + " " * 20)
            lines.append(f"  {c.status.upper():4}  {c.name:10}  {detail}")
        return "\n".join(lines)

    __repr__ = __str__


#: The checks of :func:`check_unet`, in the order they run and are reported.
CHECK_NAMES = ("builds", "parameters", "output", "shapes", "gradient")


def check_unet(
    model_cls: type[nn.Module] | Callable[[], nn.Module] | nn.Module,
    *,
    sizes: Sequence[int | tuple[int, int]] = (188, 204, (188, 220)),
    in_channels: int = 1,
    num_classes: int = 2,
    depth: int = 4,
    padding: str = "valid",
    expected_parameters: int | None = PAPER_PARAMETERS,
    batch_size: int = 1,
    seed: int = 0,
) -> UNetReport:
    """Check that a U-Net class behaves like the paper's network; report what fails, not why.

    ``model_cls()`` (no arguments) must build the network to check: by default the paper's,
    with 1 input channel, 2 classes, depth 4 and valid convolutions. An ``nn.Module`` instance
    is also accepted. The checks, one function each:

    * ``builds`` (:func:`_check_builds`): ``model_cls()`` returns an ``nn.Module``;
    * ``parameters`` (:func:`_check_parameters`): it has ``expected_parameters`` parameters
      (31,030,658 for the paper's net; None skips this check);
    * ``output`` (:func:`_check_output`): the forward pass of a (batch_size, in_channels, H, W)
      batch returns a tensor;
    * ``shapes`` (:func:`_check_shapes`): for every size in ``sizes`` the output is
      (batch_size, num_classes, h, w) with h, w the output sizes of :class:`unet_course.UNet`
      for that depth and padding;
    * ``gradient`` (:func:`_check_gradient`): after a backward pass the first layer the input
      goes through (the first module with its own parameters to be called) has a non-zero
      gradient.

    The forward passes run on the CPU with inputs drawn from ``torch.Generator`` seeded with
    ``seed``. Returns a :class:`UNetReport`; it does not raise for a broken model.
    """
    from ..model import UNet  # the reference for the size arithmetic

    sizes = [int_pair(s, f"sizes[{i}]") for i, s in enumerate(sizes)]
    if not sizes:
        raise ValueError("check_unet needs at least one input size, e.g. sizes=(188, 204)")
    reference = UNet(in_channels, num_classes, depth=depth, base_channels=1,
                     padding=padding, dropout=0.0)
    for h, w in sizes:  # raises ValueError naming the nearest valid sizes
        reference.output_size(h), reference.output_size(w)

    title = getattr(model_cls, "__name__", type(model_cls).__name__)
    built, model = _check_builds(model_cls, title)
    checks = [built]
    if model is None:
        return _skipping(title, checks, "the model was not built")
    checks.append(_check_parameters(model, expected_parameters))
    gen = torch.Generator().manual_seed(seed)
    batches = [torch.rand(batch_size, in_channels, h, w, generator=gen) for h, w in sizes]
    results, called = _forward_passes(model, batches)
    checks.append(_check_output(results[0], sizes[0]))
    if checks[-1].status == "fail":
        return _skipping(title, checks, "the forward pass gives no tensor")
    wanted = [(batch_size, num_classes, reference.output_size(h), reference.output_size(w))
              for h, w in sizes]
    checks.append(_check_shapes(sizes, results, wanted))
    checks.append(_check_gradient(model, results[0], called, gen))
    return UNetReport(title, checks)


def _skipping(title: str, checks: list[Check], why: str) -> UNetReport:
    """The report with every check not yet run marked ``"skip"`` for the reason ``why``."""
    rest = CHECK_NAMES[len(checks):]
    return UNetReport(title, [*checks, *(Check(n, "skip", why) for n in rest)])


def _check_builds(model_cls: Any, title: str) -> tuple[Check, nn.Module | None]:
    """``builds``: the model (an instance, or what ``model_cls()`` returns) is an ``nn.Module``."""
    try:
        model = model_cls if isinstance(model_cls, nn.Module) else model_cls()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return Check("builds", "fail", f"{title}() raised {type(exc).__name__}: {exc}"), None
    if not isinstance(model, nn.Module):
        return Check("builds", "fail", f"{title}() returned a {type(model).__name__}, "
                                       "not an nn.Module"), None
    built = "the model" if isinstance(model_cls, nn.Module) else f"{title}()"
    return Check("builds", "pass", f"{built} is an nn.Module"), model.to("cpu")


def _check_parameters(model: nn.Module, expected: int | None) -> Check:
    """``parameters``: the parameter count is ``expected`` (skipped when that is None)."""
    n_params = sum(p.numel() for p in model.parameters())
    if expected is None:
        return Check("parameters", "skip", f"{n_params:,} parameters (no expectation)")
    if n_params == expected:
        return Check("parameters", "pass", f"{n_params:,} parameters, as expected")
    diff = n_params - expected
    return Check("parameters", "fail", f"{n_params:,} parameters, expected {expected:,} "
                                       f"({abs(diff):,} too {'many' if diff > 0 else 'few'})")


def _forward_passes(model: nn.Module, batches: list[torch.Tensor]):
    """Run every batch; return the outputs (or exceptions) and the parameterised modules called.

    The first batch runs in training mode with autograd on and hooks that record, in order,
    which modules with parameters of their own the input reaches (``called``: (name, module)
    pairs); its output serves the output and gradient checks. The others run in eval mode
    without autograd. The model's modes are restored module by module afterwards.
    """
    called: list[tuple[str, nn.Module]] = []
    owners = {id(m): n for n, m in model.named_modules()
              if any(True for _ in m.parameters(recurse=False))}
    hooks = [m.register_forward_pre_hook(lambda mod, args: called.append((owners[id(mod)], mod)))
             for m in model.modules() if id(m) in owners]
    results: list[Any] = []
    try:
        with kept_mode(model):
            for i, x in enumerate(batches):
                model.train(i == 0)
                try:
                    with torch.set_grad_enabled(i == 0):
                        results.append(model(x))
                except Exception as exc:  # noqa: BLE001 - reported, not raised
                    results.append(exc)
                for hk in hooks:  # only the first pass is recorded
                    hk.remove()
    finally:
        for hk in hooks:
            hk.remove()
    return results, called


def _check_output(first: Any, size: tuple[int, int]) -> Check:
    """``output``: the first forward pass returned a tensor (not None, a tuple, an error)."""
    if isinstance(first, Exception):
        return Check("output", "fail", f"the forward pass of a {size[0]}x{size[1]} "
                                       f"input raised {type(first).__name__}: {first}")
    if not isinstance(first, torch.Tensor):
        return Check("output", "fail", f"the forward pass returned "
                                       f"{'None' if first is None else type(first).__name__}"
                                       ", not a tensor")
    return Check("output", "pass", "the forward pass returns a tensor")


def _check_shapes(sizes: list[tuple[int, int]], results: list[Any],
                  wanted: list[tuple[int, ...]]) -> Check:
    """``shapes``: each output is the shape ``wanted`` for its input size (one line per size)."""
    lines, bad = [], False
    for (h, w), out, want in zip(sizes, results, wanted):
        if isinstance(out, torch.Tensor) and tuple(out.shape) == want:
            lines.append(f"{h}x{w} -> {want}")
            continue
        bad = True
        got = (str(tuple(out.shape)) if isinstance(out, torch.Tensor)
               else f"{type(out).__name__}: {out}" if isinstance(out, Exception)
               else type(out).__name__)
        lines.append(f"{h}x{w} -> {got}, expected {want}")
    return Check("shapes", "fail" if bad else "pass", "\n".join(lines))


def _check_gradient(model: nn.Module, first: torch.Tensor, called: list[tuple[str, nn.Module]],
                    gen: torch.Generator) -> Check:
    """``gradient``: a backward pass from the output reaches the first layer, non-zero."""
    name, layer = called[0] if called else ("", None)
    label = f"the first layer {name!r} ({type(layer).__name__})"
    if layer is None:
        return Check("gradient", "fail", "no module with parameters was called")
    if not first.requires_grad:
        return Check("gradient", "fail", "the output does not require grad: "
                                         "no parameter can learn from the loss")
    model.zero_grad(set_to_none=True)
    # A fixed random projection of the output, so that no gradient cancels by symmetry.
    weight = torch.randn(first.shape, generator=gen)
    (first * weight).sum().backward()
    grads = [p.grad for p in layer.parameters(recurse=False)]
    model.zero_grad(set_to_none=True)
    if all(g is None for g in grads):
        return Check("gradient", "fail", f"no gradient reaches {label}")
    if all(g is None or not bool(g.abs().sum() > 0) for g in grads):
        return Check("gradient", "fail", f"the gradient of {label} is all zeros")
    return Check("gradient", "pass", f"the gradient reaches {label}")
