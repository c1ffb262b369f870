"""Tools for finding what is wrong with a U-Net and the loop around it (lesson 07).

* :func:`trace_shapes` runs one forward pass with hooks on every module and returns a table of
  each module's input and output shapes and channel counts, in call order. When the forward
  pass fails, the table stops at the module that failed and names it.
* :func:`check_unet` checks the properties a correct U-Net must have (it builds, it has the
  paper's parameter count, it returns a tensor of the right shape for several valid input
  sizes, the gradient reaches its first layer) and reports which ones fail, without saying why.
* Small helpers for the lesson's pitfalls: :func:`suggest_nn_name` for misspelled layer
  names, :func:`check_mask` for masks that are not class indices, :func:`saved_activation_bytes`
  for the memory autograd keeps, and :func:`toy_blobs`, a tiny imbalanced segmentation task.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

__all__ = [
    "PAPER_PARAMETERS",
    "Check",
    "ShapeTrace",
    "TraceRow",
    "UNetReport",
    "check_mask",
    "check_unet",
    "saved_activation_bytes",
    "suggest_nn_name",
    "toy_blobs",
    "trace_shapes",
]

#: Parameters of the paper's network: 1 input channel, 2 classes, widths 64 ... 1024.
PAPER_PARAMETERS = 31_030_658


# ----------------------------------------------------------------------------- trace_shapes
def _describe(value: Any) -> tuple[str, int | None]:
    """A short text for one input/output value and its channel count (dim 1), if it has one."""
    if isinstance(value, torch.Tensor):
        channels = int(value.shape[1]) if value.dim() >= 2 else None
        return str(tuple(value.shape)), channels
    if value is None:
        return "None", None
    return type(value).__name__, None


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    return [value]


@dataclass(eq=False)
class TraceRow:
    """One call of one module during :func:`trace_shapes`.

    ``inputs`` / ``outputs`` are text descriptions (a shape such as ``"(1, 64, 28, 28)"``,
    ``"None"`` or a type name); ``outputs`` is None while the call has not returned, which after
    a failed forward pass marks the failing module and the modules around it. ``depth`` is the
    nesting of the call: 0 for the model itself, 1 for a module its forward calls directly
    (e.g. ``ups.0`` of a ``ModuleList``, which is never called itself), and so on.
    """

    index: int
    name: str
    kind: str
    inputs: list[str]
    in_channels: list[int | None]
    depth: int = 0
    outputs: list[str] | None = None
    out_channels: list[int | None] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.outputs is not None

    @property
    def label(self) -> str:
        return self.name or f"({self.kind})"

    def channels(self) -> str:
        ins = ", ".join("?" if c is None else str(c) for c in self.in_channels)
        if self.outputs is None:
            return f"{ins} -> ?"
        outs = ", ".join("?" if c is None else str(c) for c in self.out_channels)
        return f"{ins} -> {outs}"


class ShapeTrace:
    """The table returned by :func:`trace_shapes`; print it or let the notebook display it.

    Attributes:
        rows: every module call in the order the calls started (a module called twice, such
            as a shared pooling layer, appears twice).
        output: what the model returned (None if it failed).
        error: the exception the forward pass raised, or None.
        failed: the row of the innermost module whose call raised, or None. Its ``name`` is
            the dotted attribute path, e.g. ``"ups.0.conv.0"``.
    """

    def __init__(self, rows: list[TraceRow], output: Any, error: BaseException | None,
                 depth: int | None):
        self.rows, self.output, self.error, self.depth = rows, output, error, depth
        unfinished = [r for r in rows if not r.finished]
        self.failed: TraceRow | None = unfinished[-1] if error is not None and unfinished else None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, name: str) -> TraceRow:
        """The first call of the module named ``name`` (dotted path; ``""`` is the model)."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no module named {name!r} was called; called: {[r.name for r in self.rows]}")

    def _shown(self) -> list[TraceRow]:
        if self.depth is None:
            return self.rows
        return [r for r in self.rows if r.depth <= self.depth or r is self.failed]

    def _cells(self, row: TraceRow) -> list[str]:
        if row.finished:
            out = ", ".join(row.outputs)
        elif row is self.failed:
            out = "FAILED HERE"
        else:
            out = "(did not return)"
        return [row.label, row.kind, ", ".join(row.inputs), out, row.channels()]

    @staticmethod
    def _indent(row: TraceRow) -> int:
        return max(row.depth - 1, 0)  # the model and its direct callees start at the margin

    def _footer(self) -> str:
        if self.error is None:
            return f"{len(self.rows)} module calls, all returned."
        first = str(self.error).strip().splitlines()[0] if str(self.error).strip() else ""
        where = f"{self.failed.label!r} ({self.failed.kind})" if self.failed else "the model"
        return f"Forward failed in {where}: {type(self.error).__name__}: {first}"

    def __str__(self) -> str:
        header = ["module", "type", "input shape", "output shape", "channels"]
        body = []
        for r in self._shown():
            cells = self._cells(r)
            body.append(["  " * self._indent(r) + cells[0], *cells[1:]])
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

        def fmt(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

        lines = [fmt(header), fmt(["-" * w for w in widths]), *(fmt(c) for c in body)]
        return "\n".join([*lines, self._footer()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                       ["module", "type", "input shape", "output shape", "channels"])
        rows = []
        for r in self._shown():
            style = " style='background:#fdd'" if r is self.failed else ""
            pads = [self._indent(r) + 0.5] + [0.5] * 4
            cells = "".join(f"<td style='text-align:left;padding-left:{pad}em'>"
                            f"<code>{html.escape(c)}</code></td>"
                            for c, pad in zip(self._cells(r), pads))
            rows.append(f"<tr{style}>{cells}</tr>")
        return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
                f"<p>{html.escape(self._footer())}</p>")


def trace_shapes(model: nn.Module, *inputs: Any, depth: int | None = None,
                 raise_error: bool = False, grad: bool = False, **kwargs: Any) -> ShapeTrace:
    """Run ``model(*inputs, **kwargs)`` once and record every module's input and output shapes.

    Forward hooks are put on ``model`` and each of its named sub-modules, and are removed again
    before this returns. Rows are in the order the calls started, so a container comes before
    the layers inside it.

    Args:
        model: any ``nn.Module``; its train/eval mode is left as it is.
        inputs, kwargs: what to pass to the forward pass, e.g. a batch (N, C, H, W).
        depth: show only calls nested at most this deep (1: the modules the model's forward
            calls directly); the failing module is always shown. ``None`` shows all.
        raise_error: when the forward pass fails, re-raise its exception (with a note naming
            the failing module) instead of returning the table with ``error`` set.
        grad: run with autograd on (default off: no graph is kept, which saves memory).

    Returns:
        a :class:`ShapeTrace`. If the forward pass raised, ``trace.error`` is the exception,
        ``trace.failed`` the row of the innermost module whose call raised, and the table ends
        there.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace_shapes needs an nn.Module, got {type(model).__name__}")
    rows: list[TraceRow] = []
    open_calls: dict[int, list[TraceRow]] = {}
    stack: list[TraceRow] = []  # the calls that have started and not yet returned
    handles = []

    def pre_hook(name: str):
        def hook(module, args, kw):
            described = [_describe(v) for a in (*args, *kw.values()) for v in _flatten(a)]
            row = TraceRow(len(rows), name, type(module).__name__,
                           [d[0] for d in described], [d[1] for d in described], len(stack))
            rows.append(row)
            stack.append(row)
            open_calls.setdefault(id(module), []).append(row)
        return hook

    def post_hook(module, args, kw, output):
        row = open_calls[id(module)].pop()
        stack.remove(row)
        described = [_describe(v) for v in _flatten(output)]
        row.outputs = [d[0] for d in described]
        row.out_channels = [d[1] for d in described]

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre_hook(name), with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
    output, error = None, None
    try:
        with torch.set_grad_enabled(grad):
            output = model(*inputs, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the error is reported in the table
        error = exc
    finally:
        for h in handles:
            h.remove()
    trace = ShapeTrace(rows, output, error, depth)
    if error is not None and raise_error:
        if trace.failed is not None and hasattr(error, "add_note"):
            error.add_note(f"trace_shapes: the failing module is {trace.failed.label!r} "
                           f"({trace.failed.kind})")
        raise error
    return trace


# ----------------------------------------------------------------------------- check_unet
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


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


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
    is also accepted. The checks:

    * ``builds``: ``model_cls()`` returns an ``nn.Module``;
    * ``parameters``: it has ``expected_parameters`` parameters (31,030,658 for the paper's net;
      None skips this check);
    * ``output``: the forward pass of a (batch_size, in_channels, H, W) batch returns a tensor;
    * ``shapes``: for every size in ``sizes`` the output is (batch_size, num_classes, h, w) with
      h, w the output sizes of :class:`unet_course.UNet` for that depth and padding;
    * ``gradient``: after a backward pass the first layer the input goes through (the first
      module with its own parameters to be called) has a non-zero gradient.

    The forward passes run on the CPU with inputs drawn from ``torch.Generator`` seeded with
    ``seed``. Returns a :class:`UNetReport`; it does not raise for a broken model.
    """
    from .model import UNet  # the reference for the size arithmetic

    sizes = [_size_pair(s) for s in sizes]
    if not sizes:
        raise ValueError("check_unet needs at least one input size, e.g. sizes=(188, 204)")
    reference = UNet(in_channels, num_classes, depth=depth, base_channels=1,
                     padding=padding, dropout=0.0)
    for h, w in sizes:  # raises ValueError naming the nearest valid sizes
        reference.output_size(h), reference.output_size(w)

    title = getattr(model_cls, "__name__", type(model_cls).__name__)
    checks: list[Check] = []

    def skip(*names: str, why: str) -> UNetReport:
        checks.extend(Check(n, "skip", why) for n in names)
        return UNetReport(title, checks)

    # builds
    try:
        model = model_cls if isinstance(model_cls, nn.Module) else model_cls()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks.append(Check("builds", "fail", f"{title}() raised {type(exc).__name__}: {exc}"))
        return skip("parameters", "output", "shapes", "gradient", why="the model was not built")
    if not isinstance(model, nn.Module):
        checks.append(Check("builds", "fail", f"{title}() returned a {type(model).__name__}, "
                                              "not an nn.Module"))
        return skip("parameters", "output", "shapes", "gradient", why="the model was not built")
    built = "the model" if isinstance(model_cls, nn.Module) else f"{title}()"
    checks.append(Check("builds", "pass", f"{built} is an nn.Module"))
    model = model.to("cpu")

    # parameters
    n_params = sum(p.numel() for p in model.parameters())
    if expected_parameters is None:
        checks.append(Check("parameters", "skip", f"{n_params:,} parameters (no expectation)"))
    elif n_params == expected_parameters:
        checks.append(Check("parameters", "pass", f"{n_params:,} parameters, as expected"))
    else:
        diff = n_params - expected_parameters
        checks.append(Check("parameters", "fail",
                            f"{n_params:,} parameters, expected {expected_parameters:,} "
                            f"({abs(diff):,} too {'many' if diff > 0 else 'few'})"))

    gen = torch.Generator().manual_seed(seed)
    batches = [torch.rand(batch_size, in_channels, h, w, generator=gen) for h, w in sizes]

    # The first size runs in training mode with autograd on and hooks that record which
    # parameterised module the input reaches first; its output serves every check below.
    called: list[tuple[str, nn.Module]] = []
    owners = {id(m): n for n, m in model.named_modules()
              if any(True for _ in m.parameters(recurse=False))}
    hooks = [m.register_forward_pre_hook(lambda mod, args: called.append((owners[id(mod)], mod)))
             for m in model.modules() if id(m) in owners]
    was_training = model.training
    results: list[Any] = []
    try:
        for i, x in enumerate(batches):
            model.train(i == 0)
            try:
                with torch.set_grad_enabled(i == 0):
                    results.append(model(x))
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                results.append(exc)
            if i == 0:
                for hk in hooks:
                    hk.remove()
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)

    # output
    first = results[0]
    if isinstance(first, Exception):
        checks.append(Check("output", "fail", f"the forward pass of a {sizes[0][0]}x{sizes[0][1]} "
                                              f"input raised {type(first).__name__}: {first}"))
    elif not isinstance(first, torch.Tensor):
        checks.append(Check("output", "fail", f"the forward pass returned "
                                              f"{'None' if first is None else type(first).__name__}"
                                              ", not a tensor"))
    else:
        checks.append(Check("output", "pass", "the forward pass returns a tensor"))
    if checks[-1].status == "fail":
        return skip("shapes", "gradient", why="the forward pass gives no tensor")

    # shapes
    lines, bad = [], False
    for (h, w), out in zip(sizes, results):
        want = (batch_size, num_classes, reference.output_size(h), reference.output_size(w))
        if isinstance(out, torch.Tensor) and tuple(out.shape) == want:
            lines.append(f"{h}x{w} -> {want}")
            continue
        bad = True
        got = (str(tuple(out.shape)) if isinstance(out, torch.Tensor)
               else f"{type(out).__name__}: {out}" if isinstance(out, Exception)
               else type(out).__name__)
        lines.append(f"{h}x{w} -> {got}, expected {want}")
    checks.append(Check("shapes", "fail" if bad else "pass", "\n".join(lines)))

    # gradient
    name, layer = called[0] if called else ("", None)
    label = f"the first layer {name!r} ({type(layer).__name__})"
    if layer is None:
        checks.append(Check("gradient", "fail", "no module with parameters was called"))
    elif not first.requires_grad:
        checks.append(Check("gradient", "fail", "the output does not require grad: "
                                                "no parameter can learn from the loss"))
    else:
        model.zero_grad(set_to_none=True)
        # A fixed random projection of the output, so that no gradient cancels by symmetry.
        weight = torch.randn(first.shape, generator=gen)
        (first * weight).sum().backward()
        grads = [p.grad for p in layer.parameters(recurse=False)]
        if all(g is None for g in grads):
            checks.append(Check("gradient", "fail", f"no gradient reaches {label}"))
        elif all(g is None or not bool(g.abs().sum() > 0) for g in grads):
            checks.append(Check("gradient", "fail", f"the gradient of {label} is all zeros"))
        else:
            checks.append(Check("gradient", "pass", f"the gradient reaches {label}"))
        model.zero_grad(set_to_none=True)
    return UNetReport(title, checks)


# ----------------------------------------------------------------------------- small helpers
def suggest_nn_name(name: str, namespace: Any = nn, n: int = 3) -> list[str]:
    """Close matches for a misspelled layer name in ``torch.nn`` (or ``namespace``).

    ``suggest_nn_name("Relu") == ["ReLU", ...]``; a name that exists only in
    ``torch.nn.functional`` (a function, not a layer) is suggested as ``"functional.<name>"``.
    Case-insensitive exact matches come first.
    """
    public = [a for a in dir(namespace) if not a.startswith("_")]
    exact = [a for a in public if a.lower() == name.lower()]
    close = difflib.get_close_matches(name, public, n=n, cutoff=0.6)
    found = exact + [c for c in close if c not in exact]
    if namespace is nn and hasattr(F, name):
        found.append(f"functional.{name}")
    return found[:n]


def check_mask(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Check that ``mask`` holds integer class indices 0 .. num_classes-1; return it unchanged.

    Raises TypeError for a floating point or boolean mask and ValueError for values out of
    range, with a hint for the common cause (a mask stored as an 8-bit image, 0 and 255).
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"a mask must be a torch.Tensor of class indices, got {type(mask).__name__}")
    if mask.dtype.is_floating_point or mask.dtype == torch.bool:
        raise TypeError(f"a mask must hold integer class indices (torch.int64), got {mask.dtype}; "
                        "check its values, then convert with mask.long()")
    values = torch.unique(mask).tolist()
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        hint = ""
        if values and max(values) == 255:
            hint = ("; it looks like an 8-bit image (0 = black, 255 = white): "
                    "use (mask > 127).long() to get indices 0 and 1")
        shown = values if len(values) <= 8 else [*values[:4], "...", *values[-2:]]
        raise ValueError(f"mask values must be class indices 0..{num_classes - 1} for "
                         f"{num_classes} classes, found {shown}{hint}")
    return mask


def saved_activation_bytes(model: nn.Module, *inputs: Any, **kwargs: Any) -> int:
    """Bytes of tensors autograd keeps alive for the backward pass of ``model(*inputs)``.

    Counts each storage once and leaves out the model's own parameters (they exist anyway).
    Under ``torch.no_grad()`` nothing is kept, so the result is 0.
    """
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_storages:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(*inputs, **kwargs)
    del out
    return sum(seen.values())


def toy_blobs(
    n: int,
    size: int = 32,
    blobs: tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (1.5, 3.0),
    contrast: float = 0.35,
    noise: float = 0.15,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A tiny, strongly imbalanced segmentation task: a few small bright discs on clutter.

    Returns ``images`` float32 (n, 1, size, size) in [0, 1] and ``masks`` int64 (n, size, size)
    with 1 inside a disc and 0 elsewhere; with the defaults about 3 % of the pixels are 1.
    Each image has ``blobs[0]``..``blobs[1]`` discs with radii in ``radius`` (pixels), brighter
    than the background by ``contrast``, on smooth clutter plus Gaussian noise of std ``noise``.
    The same ``seed`` gives the same arrays.
    """
    if n < 1 or size < 9:
        raise ValueError(f"toy_blobs needs n >= 1 and size >= 9, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, 1, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    for i in range(n):
        disc = np.zeros((size, size), bool)
        for _ in range(rng.integers(blobs[0], blobs[1] + 1)):
            cy, cx = rng.uniform(4, size - 4, 2)
            r = rng.uniform(*radius)
            disc |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        # Smooth clutter makes a single global threshold not quite enough.
        clutter = ndimage.gaussian_filter(rng.normal(size=(size, size)), 2.0)
        clutter /= clutter.std()
        image = 0.4 + 0.08 * clutter + contrast * disc + noise * rng.normal(size=(size, size))
        images[i, 0] = np.clip(image, 0.0, 1.0)
        masks[i] = disc
    return torch.from_numpy(images), torch.from_numpy(masks)
