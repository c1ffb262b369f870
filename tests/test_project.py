"""The project's pieces agree with each other: packaging, environment, book, notebooks, CI."""

import json
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("book", "dev"):
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    named = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            named |= {_name(r) for r in dep["pip"] if not r.startswith("-")}
        else:
            named.add(CONDA_NAMES.get(_name(dep), _name(dep)))
    named -= {"python", "pip"}
    assert named == wanted
    book_pins = [r for r in project["optional-dependencies"]["book"] if _name(r) == "jupyter-book"]
    assert book_pins and "<2" in book_pins[0]  # 2.x needs the network to build


def test_repository_url_is_set_in_one_place():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        for cell in cells:
            src = "".join(cell["source"])
            for found in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", src):
                assert found == url, f"{nb.name} points at {found}, _config.yml at {url}"


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    files = _toc_files()
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in files, f"{nb.name} is missing from _toc.yml"
    for f in files:
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f


def test_notebooks_were_stored_from_one_clean_run():
    for nb in NOTEBOOKS:
        cells = [c for c in json.loads(nb.read_text())["cells"]
                 if c["cell_type"] == "code" and "".join(c["source"]).strip()]
        counts = [c["execution_count"] for c in cells]
        assert counts == list(range(1, len(cells) + 1)), f"{nb.name}: run `make notebooks`"
        for i, c in enumerate(cells):
            tags = set(c.get("metadata", {}).get("tags", []))
            for out in c["outputs"]:
                assert not (out["output_type"] == "stream" and out["name"] == "stderr"), \
                    f"{nb.name} cell {i} wrote to stderr: {''.join(out['text'])[:200]}"
                if out["output_type"] == "error":
                    assert "raises-exception" in tags, f"{nb.name} cell {i}: untagged error"


def test_every_lesson_has_a_figure_and_exercises():
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        text = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert re.search(r"(?im)^#+ .*exercises", text), f"{nb.name} has no Exercises section"
        assert any("image/png" in o.get("data", {}) for c in cells if c["cell_type"] == "code"
                   for o in c["outputs"]), f"{nb.name} shows no figure"


def test_readme_leads_with_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make book") < readme.index("make notebooks")
    assert "make test" in readme
    assert re.search(r"(?m)^make test\s*$", (ROOT / ".ci" / "run").read_text())
    makefile = (ROOT / "Makefile").read_text()
    for target in ("book", "test", "notebooks", "bench"):
        assert re.search(rf"(?m)^{target}:", makefile), target


def test_public_api_is_exported():
    import unet_course

    for name in ("UNet", "profile", "device", "seed_everything", "predict_tiled", "elastic_deform",
                 "unet_weight_map", "weighted_cross_entropy", "synthetic_em", "touching_cells",
                 "ISBI2012", "pixel_error", "rand_error", "iou", "dice", "fit", "evaluate",
                 "save_checkpoint", "load_checkpoint", "draw_unet", "trace_shapes", "check_unet"):
        assert name in unet_course.__all__ and hasattr(unet_course, name)
