"""Every figure the lessons store shows its smallest text at 11 px or more in a 1280-px window.

The sizes come from book/figure_text.jsonl, which `make notebooks` writes while it runs the
lessons (unet_course/viz/legibility.py records the text matplotlib really draws into each PNG).
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unet_course.viz.legibility import COLUMN_PX, MIN_TEXT_PX, displayed_text_px, png_size

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "book" / "figure_text.jsonl"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _stored_pngs(notebook: Path) -> list[bytes]:
    pngs = []
    for cell in json.loads(notebook.read_text())["cells"]:
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                pngs.append(base64.b64decode("".join(out["data"]["image/png"])))
    return pngs


def test_the_recorder_logs_the_smallest_text_really_drawn(tmp_path):
    # In a fresh interpreter: the recorder patches matplotlib for the rest of the process.
    log = tmp_path / "log.jsonl"
    script = """
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.core.pylabtools import print_figure
from unet_course.viz import book_style
book_style()
fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
ax.set_xlim(0, 1)
ax.text(0.5, 0.5, "seven", fontsize=7)
ax.text(5.0, 0.5, "outside", fontsize=5, clip_on=True)  # clipped away, still drawn by Agg
fig.text(0.5, 0.5, "", fontsize=3)                       # empty: not text a reader sees
open(r"%s", "wb").write(print_figure(fig, "png", bbox_inches="tight"))
""" % (tmp_path / "fig.png")
    env = dict(os.environ, UNET_COURSE_FIGURE_TEXT_LOG=str(log))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=ROOT)
    (entry,) = map(json.loads, log.read_text().splitlines())
    png = (tmp_path / "fig.png").read_bytes()
    assert entry["sha256"] == hashlib.sha256(png).hexdigest()
    assert (entry["width"], entry["height"]) == png_size(png)
    # 5 pt at 100 dpi is 6.94 px: Agg is handed clipped text too, so it counts (conservative)
    assert entry["min_text_px"] == pytest.approx(5 * 100 / 72, abs=0.01)


def test_displayed_size_shrinks_only_wide_figures_and_every_figure_on_a_phone():
    assert displayed_text_px(15.0, 600, 1280) == 15.0
    assert displayed_text_px(15.0, 2 * COLUMN_PX[1280], 1280) == pytest.approx(7.5)
    assert displayed_text_px(15.0, 5000, 420) == displayed_text_px(15.0, 50, 420) == 15.0 * 0.72
    # book_style's smallest size, 11 pt at 100 dpi, is 11 px on a phone
    assert displayed_text_px(11 * 100 / 72, 5000, 420) == pytest.approx(MIN_TEXT_PX, abs=0.01)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_stored_figure_is_legible_on_a_laptop_and_a_phone(notebook):
    log = {}
    if LOG.exists():
        log = {e["sha256"]: e for e in map(json.loads, LOG.read_text().splitlines()) if e}
    small = []
    for i, png in enumerate(_stored_pngs(notebook)):
        sha = hashlib.sha256(png).hexdigest()
        assert sha in log, (f"figure {i} of {notebook.name} is not in {LOG.name}: re-run the "
                            "notebook with `make notebooks`, which measures its text")
        entry = log[sha]
        assert entry["width"] == png_size(png)[0]
        for window in (1280, 420):
            seen = displayed_text_px(entry["min_text_px"], entry["width"], window)
            # 0.01 px: 11 pt at 100 dpi and the phone's zoom give 10.998 px
            if seen < MIN_TEXT_PX - 0.01:
                small.append(f"figure {i}, {window}-px window: {entry['text']!r} at {seen:.1f} px"
                             f" ({entry['width']} px wide, text drawn at "
                             f"{entry['min_text_px']} px)")
    assert not small, f"{notebook.name}: text under {MIN_TEXT_PX} px:\n" + "\n".join(small)
