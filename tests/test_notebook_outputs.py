"""What a reader sees in the stored notebooks: short errors, no machine's paths, no wide code.

The book renders the outputs stored in the notebooks, so they must read well at the column's
width and say nothing about the machine that ran them:

* no stored output holds an absolute path of a machine (a home, the checkout, a temporary
  directory) or a frame of ``site-packages``;
* an expected error is at most 15 lines, none wider than 88 characters
  (``unet_course.debug.short_tracebacks()`` folds the library's frames and wraps the message);
* no line of code is longer than 88 characters, the width of the book's code boxes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
WIDTH, ERROR_LINES = 88, 15
MACHINE_PATH = re.compile(
    r"(?<![\w.~])(/home/|/root/|/Users/|/tmp/|/var/folders/|/work/|/private/|[A-Z]:\\)"
    r"|site-packages|dist-packages"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cells(path: Path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _text(output: dict) -> str:
    if output["output_type"] == "error":
        return ANSI.sub("", "\n".join(output["traceback"]))
    data = output.get("data", {})
    return "".join(output.get("text", "")) + "".join(data.get("text/plain", ""))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_output_names_a_machine_path(path):
    found = [(i, m.group(0)) for i, cell in enumerate(_cells(path)) for out in cell["outputs"]
             for m in [MACHINE_PATH.search(_text(out))] if m]
    assert not found, f"{path.name}: code cells (index, match) with a machine's path: {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_expected_errors_are_short_and_fit_the_column(path):
    errors = [(i, _text(out).splitlines()) for i, cell in enumerate(_cells(path))
              for out in cell["outputs"] if out["output_type"] == "error"]
    too_long = [(i, len(lines)) for i, lines in errors if len(lines) > ERROR_LINES]
    too_wide = [(i, max(map(len, lines))) for i, lines in errors
                if lines and max(map(len, lines)) > WIDTH]
    assert not too_long, f"{path.name}: errors longer than {ERROR_LINES} lines: {too_long}"
    assert not too_wide, f"{path.name}: errors wider than {WIDTH} characters: {too_wide}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_lines_fit_the_column(path):
    wide = [(i, len(line)) for i, cell in enumerate(_cells(path))
            for line in "".join(cell["source"]).splitlines() if len(line) > WIDTH]
    assert not wide, f"{path.name}: code lines over {WIDTH} characters (cell, length): {wide}"


def test_the_checks_catch_what_they_look_for():
    # each rule fails on the thing it forbids, so a green run means something
    assert MACHINE_PATH.search("File /home/ana/unet/notebooks/x.py, line 3")
    assert MACHINE_PATH.search("lib/python3.11/site-packages/torch/nn/modules/conv.py")
    assert not MACHINE_PATH.search("ISBI2012(root='~/.cache/unet_course/isbi2012')")
    assert not MACHINE_PATH.search("unet_course/model.py, line 317; see book/package.md")


LESSON_TALKS_ABOUT_TESTS = re.compile(r"nbval|pytest|tests/|test_\w+\.py|claims? tests?", re.I)


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if not p.name.startswith("00_")],
                         ids=lambda p: p.stem)
def test_lessons_talk_about_the_net_not_about_the_course_tests(path):
    # Lesson 00 (setup) tells the reader how to check an installation; the lessons say what
    # was measured ("at seeds 0-2, 1 and 2 threads"), not which test file measures it.
    cells = json.loads(path.read_text())["cells"]
    found = [(i, m.group(0)) for i, c in enumerate(cells) if c["cell_type"] == "markdown"
             for m in LESSON_TALKS_ABOUT_TESTS.finditer("".join(c["source"]))]
    assert not found, f"{path.name}: markdown cells talk about the course's tests: {found}"
