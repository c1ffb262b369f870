"""How large the book's figure text looks, page by page, at a laptop's and a phone's width.

    python benchmarks/book_legibility.py            # per page, from book/figure_text.jsonl
    python benchmarks/book_legibility.py --prune    # drop log lines no stored figure uses
    python benchmarks/book_legibility.py --html _build/html   # also measure the built pages

    python benchmarks/book_legibility.py --html _build/html --screenshots /tmp/pages

The log is written by ``make notebooks`` (unet_course/viz/legibility.py): for every figure, the
smallest text drawn into its PNG, in the PNG's pixels. The size a reader sees is that times the
shrink the page applies. With ``--html`` the shrink is measured in headless Chromium (each
image's drawn width against its own width, at 1280 and 420 px windows) instead of taken from
``unet_course.viz.legibility``; it also counts the code cells that scroll sideways.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from unet_course.viz.legibility import MIN_TEXT_PX, displayed_text_px  # noqa: E402

WINDOWS = (1280, 420)

LOG = ROOT / "book" / "figure_text.jsonl"

# Appended to a copy of a page, shown in an iframe of the window's width (headless Chromium will
# not make a window narrower than 500 px): writes, once loaded, each figure's own and drawn
# width and how many code cells scroll into the outer page, whose DOM --dump-dom prints.
_PROBE = """<script>window.addEventListener('load', function () {
 var imgs = []; document.querySelectorAll('div.cell_output img').forEach(function (im) {
  imgs.push(im.getAttribute('src') + ',' + im.naturalWidth + ',' + im.getBoundingClientRect().width); });
 var pres = document.querySelectorAll('div.cell_input pre'), wide = 0;
 pres.forEach(function (p) { if (p.scrollWidth > p.clientWidth + 1) wide++; });
 var d = document.createElement('div'); d.id = 'legibility-probe';
 d.textContent = 'PROBE[' + imgs.join(';') + '|' + wide + '/' + pres.length + '|' +
   document.documentElement.scrollWidth + ']'; window.parent.document.body.appendChild(d); });
</script>"""


def stored_figures(notebook: Path) -> list[str]:
    """sha256 of every PNG a notebook stores in its outputs, in order."""
    shas = []
    for cell in json.loads(notebook.read_text())["cells"]:
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                shas.append(hashlib.sha256(base64.b64decode("".join(png))).hexdigest())
    return shas


def read_log(path: Path = LOG) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {e["sha256"]: e for e in map(json.loads, path.read_text().splitlines()) if e}


def prune(path: Path = LOG) -> int:
    """Keep the log's lines for the figures the notebooks store; returns how many were kept."""
    used = {s for nb in sorted((ROOT / "notebooks").glob("*.ipynb")) for s in stored_figures(nb)}
    kept = {s: e for s, e in read_log(path).items() if s in used}
    path.write_text("".join(json.dumps(kept[s]) + "\n" for s in sorted(kept)))
    return len(kept)


def _framed(page: Path, tmp: Path, width: int, height: int, probe: str = "") -> Path:
    """A copy of ``page`` (with ``probe`` before </body>) inside an iframe ``width`` px wide."""
    text = re.sub(r'(src|href)="\.\./', r'\1="../../', page.read_text())
    # the copy sits one folder deeper: its relative links must climb one more level
    text = re.sub(r'(src|href)="(?![a-z]+:|/|#|\.\./)', r'\1="../', text)
    (tmp / page.name).write_text(text.replace("</body>", probe + "</body>"))
    frame = tmp / "frame.html"
    frame.write_text(f'<html><body style="margin:0"><iframe src="{page.name}" width="{width}" '
                     f'height="{height}" style="border:0"></iframe></body></html>')
    return frame


def _chromium(width: int, height: int, *args: str) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("--html needs chromium (apt-get install -y chromium)")
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--allow-file-access-from-files", "--disable-web-security",
                           "--hide-scrollbars", f"--window-size={max(width, 500) + 20},{height}",
                           "--virtual-time-budget=8000", *args],
                          capture_output=True, text=True, timeout=180).stdout


def screenshot(page: Path, width: int, out: Path, height: int = 16000) -> None:
    """A PNG of ``page`` as a ``width``-px window shows it (its first ``height`` px)."""
    with tempfile.TemporaryDirectory(dir=page.parent) as tmp:
        frame = _framed(page, Path(tmp), width, height)
        _chromium(width, height, f"--screenshot={out}", frame.as_uri())


def measure_page(page: Path, width: int) -> tuple[dict[str, tuple[int, float]], str, int]:
    """Per image file name: (own width, drawn width) in a ``width``-px window; scrolling code."""
    with tempfile.TemporaryDirectory(dir=page.parent) as tmp:
        frame = _framed(page, Path(tmp), width, 3000, _PROBE)
        dom = _chromium(width, 3000, "--dump-dom", frame.as_uri())
    found = re.search(r"PROBE\[([^\]]*)\|(\d+/\d+)\|(\d+)\]", dom)
    if not found:
        raise SystemExit(f"no measurement came back from {page}")
    images = {}
    for item in filter(None, found.group(1).split(";")):
        src, natural, drawn = item.rsplit(",", 2)
        images[Path(src).name] = (int(natural), float(drawn))
    return images, found.group(2), int(found.group(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prune", action="store_true", help="drop unused log lines and stop")
    parser.add_argument("--html", type=Path, help="a built book (_build/html) to measure")
    parser.add_argument("--screenshots", type=Path, metavar="DIR",
                        help="with --html: also save each lesson page at 1280 and 420 px there")
    args = parser.parse_args()
    if args.prune:
        print(f"{LOG.relative_to(ROOT)}: {prune()} figures kept")
        return
    log = read_log()
    print(f"{'page':34} figs  smallest text (px) at 1280, 420 windows   code cells scrolling")
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shas = stored_figures(nb)
        missing = [s for s in shas if s not in log]
        if missing:
            print(f"{nb.stem:34} {len(shas):4}  {len(missing)} figure(s) not in the log: "
                  "run make notebooks")
            continue
        if not shas:
            continue
        sizes = {w: min(displayed_text_px(log[s]["min_text_px"], log[s]["width"], w)
                        for s in shas) for w in WINDOWS}
        scrolling = ""
        if args.html:
            page = args.html / "notebooks" / f"{nb.stem}.html"
            for w in WINDOWS:
                if args.screenshots:
                    args.screenshots.mkdir(parents=True, exist_ok=True)
                    screenshot(page, w, args.screenshots.resolve() / f"{nb.stem}_{w}.png")
                images, code, page_width = measure_page(page, w)
                # myst-nb names an image file by its sha256, so a figure is found by its hash
                drawn = [log[s]["min_text_px"] * images[f"{s}.png"][1] / images[f"{s}.png"][0]
                         for s in shas if f"{s}.png" in images]
                sizes[w] = min(drawn) if drawn else float("nan")
                scrolling += f"{w}: {code}  " + (f"(page {page_width} px wide) " if
                                                   page_width > w else "")
        flag = "" if min(sizes.values()) >= MIN_TEXT_PX - 0.01 else "  < 11 px"
        print(f"{nb.stem:34} {len(shas):4}  {sizes[1280]:5.1f}  {sizes[420]:5.1f}{flag:10}"
              f"   {scrolling}")


if __name__ == "__main__":
    main()
