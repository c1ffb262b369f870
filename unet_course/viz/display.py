"""How the lessons show results and code: tables instead of padded text, sources highlighted.

A notebook output has two faces: the HTML the book and Jupyter show, and the plain text that a
console prints and that ``pytest --nbval`` compares. :class:`Table` gives both: an HTML table
(numbers right-aligned, one row per line) and the same table as aligned text. :func:`show_source`
gives a function's code with syntax highlighting, without its docstring, whose reStructuredText
markup (``like this``) is meant for the package's reference and not for the page.
"""

from __future__ import annotations

import ast
import html
import inspect
import textwrap
from collections.abc import Callable, Sequence

from IPython.display import Code

__all__ = ["Table", "show_source"]


def _cell_text(value, digits: int | None) -> str:
    if isinstance(value, float) and digits is not None:
        return f"{value:.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").replace("%", "").replace("\u2212", "-"))
    except ValueError:
        return False
    return True


class Table:
    """A small table of results, shown as HTML in the book and as aligned text in a console.

    ``rows``: a sequence of rows, each a sequence with one value per column of ``header``
    (strings, ints, floats; floats are written with ``digits`` decimals unless ``digits`` is
    None). ``title`` is an optional caption above the table. Columns whose cells all read as
    numbers are right-aligned, the others left-aligned.
    """

    def __init__(self, rows: Sequence[Sequence], header: Sequence[str], *,
                 title: str | None = None, digits: int | None = 3):
        header = [str(h) for h in header]
        if not header:
            raise ValueError("a Table needs at least one column in header")
        cells = []
        for i, row in enumerate(rows):
            row = list(row)
            if len(row) != len(header):
                raise ValueError(f"row {i} has {len(row)} values, header has {len(header)} "
                                 f"columns: {header}")
            cells.append([_cell_text(v, digits) for v in row])
        self.header, self.cells, self.title = header, cells, title
        self.numeric = [bool(cells) and all(_is_number(r[j]) or r[j] == "" for r in cells)
                        for j in range(len(header))]

    def __repr__(self) -> str:
        widths = [max([len(h)] + [len(r[j]) for r in self.cells])
                  for j, h in enumerate(self.header)]

        def line(values):
            return "  ".join(v.rjust(w) if num else v.ljust(w)
                             for v, w, num in zip(values, widths, self.numeric)).rstrip()

        out = [self.title] if self.title else []
        out += [line(self.header), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in self.cells]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        def row(values, tag):
            return "<tr>" + "".join(
                f'<{tag} style="text-align:{"right" if num else "left"}">{html.escape(v)}</{tag}>'
                for v, num in zip(values, self.numeric)) + "</tr>"

        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        body = "".join(row(r, "td") for r in self.cells)
        return (f'<table class="unet-course-table">{caption}<thead>{row(self.header, "th")}'
                f"</thead><tbody>{body}</tbody></table>")


def _without_docstring(source: str) -> str:
    """``source`` of one def or class with its docstring (and only it) removed."""
    tree = ast.parse(source)
    node = tree.body[0]
    body = getattr(node, "body", None)
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return source
    lines = source.splitlines(keepends=True)
    doc = body[0]
    del lines[doc.lineno - 1:doc.end_lineno]
    return "".join(lines)


def show_source(*objects: Callable | type, docstring: bool = False) -> Code:
    """The source of ``objects`` (functions or classes), highlighted as Python, blank-line separated.

    Docstrings are left out unless ``docstring=True``: the lesson's text says what the code does.
    """
    if not objects:
        raise ValueError("show_source needs at least one function or class")
    parts = []
    for obj in objects:
        source = textwrap.dedent(inspect.getsource(obj))
        parts.append(source if docstring else _without_docstring(source))
    return Code("\n\n".join(p.rstrip("\n") for p in parts) + "\n", language="python")
