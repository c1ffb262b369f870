"""A table of every module's input and output shapes during one forward pass (lesson 07).

:func:`trace_shapes` runs one forward pass with hooks on every module and returns a
:class:`ShapeTrace`: each call's input and output shapes and channel counts, in call order. When
the forward pass fails, the table stops at the module that failed and names it. Re-exported
from :mod:`unet_course.debug`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["ShapeTrace", "TraceRow", "trace_shapes"]


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
