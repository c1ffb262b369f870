"""The package's layout, as book/package.md describes it: import layers, small modules, short functions.

The page promises three things a reader can rely on when changing the code; this file checks
each of them on the source, so the page cannot drift from the package:

* every module belongs to one layer and imports only from its own layer or the ones below;
* no module is longer than 400 lines and no function longer than 80;
* every module and folder of the package is named on the page.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "unet_course"
PAGE = ROOT / "book" / "package.md"

# Layer by layer, bottom to top; a folder (data, augment, debug, viz, experiments) sits in one
# layer with all its modules.
LAYERS: list[tuple[str, set[str]]] = [
    ("checks and settings", {"validation", "settings", "timing", "_manifests"}),
    ("sizes and pixels", {"geometry", "mirror", "postprocess", "_imagefile"}),
    ("the paper's parts", {"model", "weights", "losses", "metrics", "baseline", "imageio",
                           "maskio", "variants", "neighbours", "instance_metrics",
                           "fusion"}),
    ("images and data", {"memory", "tiling", "predict", "interpret", "augment", "data"}),
    ("training", {"steps", "checkpoint", "_checkpoint_kinds", "fit_checks", "train", "presets",
                  "folders", "plan"}),
    ("for lessons and users", {"debug", "viz", "experiments", "__main__", "_cli_errors",
                               "_cli_train", "_cli_predict",
                               "__init__"}),
]
LAYER_OF = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def top_name(path: Path) -> str:
    """The layer key of a file: its top-level module or folder ("data" for data/tiles.py)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def package_imports(path: Path) -> set[str]:
    """Top-level package modules that the file ``path`` imports."""
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for unet_course/x.py, 1 in a folder
    return imports_of(path.read_text(), depth)


def imports_of(source: str, depth: int) -> set[str]:
    """Top-level package modules imported by ``source``, a file ``depth`` folders down."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            if node.level - 1 < depth:  # stays inside the file's own folder
                continue
            target = node.module
        elif node.module and node.module.startswith("unet_course."):
            target = node.module.removeprefix("unet_course.")
        else:
            continue
        if target:
            found.add(target.split(".")[0])
        else:  # `from . import x` at the top level
            found.update(alias.name for alias in node.names)
    return found


def upward(layer_key: str, imported: set[str]) -> dict[str, str]:
    """The imports of a module in ``layer_key``'s layer that reach a higher layer."""
    own = LAYER_OF[layer_key]
    return {name: LAYERS[LAYER_OF[name]][0] for name in imported
            if name in LAYER_OF and LAYER_OF[name] > own}


def test_every_module_has_a_layer():
    unplaced = sorted({top_name(p) for p in modules()} - set(LAYER_OF))
    assert not unplaced, f"add these to LAYERS here and to book/package.md: {unplaced}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path):
    key = top_name(path)
    above = upward(key, package_imports(path))
    assert not above, (f"{path.relative_to(PACKAGE)} (layer '{LAYERS[LAYER_OF[key]][0]}') "
                       f"imports from higher layers: {above}")


def test_the_layer_check_reports_an_upward_import():
    # A model that imported the training loop, from the top level or from inside a folder.
    assert upward("model", imports_of("from .train import fit", 0)) == {"train": "training"}
    assert upward("data", imports_of("from ..viz import draw_unet", 1)) == {
        "viz": "for lessons and users"}
    # Imports inside a folder, and downward ones, are fine.
    assert imports_of("from .pairs import ImageMaskPairs", 1) == set()
    assert upward("train", imports_of("from unet_course.model import UNet", 0)) == {}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_are_small(path):
    source = path.read_text()
    assert len(source.splitlines()) < 400, f"{path.name} has {len(source.splitlines())} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length < 80, f"{path.name}: {node.name} has {length} lines"


def test_the_book_page_names_every_module():
    text = PAGE.read_text()
    named = set(re.findall(r"`([\w/]+?)(?:\.py|/)`", text))
    missing = sorted({str(p.relative_to(PACKAGE).with_suffix("")) for p in modules()
                      if p.name != "__init__.py"} - named)
    assert not missing, f"book/package.md does not name: {missing}"
    for title, _ in LAYERS:
        assert title in text, f"book/package.md lacks the layer '{title}'"
