"""The book builds from the notebooks' stored outputs, warnings as errors, and shows every page."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) is None,
                    reason="jupyter-book is not installed in this environment (pip install -e '.[book]')")
def test_book_builds_from_stored_outputs(tmp_path):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # local extensions are found relative to the config file, which moves to tmp_path here
    extensions = config["sphinx"].get("local_extensions") or {}
    config["sphinx"]["local_extensions"] = {n: str(ROOT / p) for n, p in extensions.items()}
    config_file = tmp_path / "_config.yml"
    config_file.write_text(yaml.safe_dump(config))
    jb = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jb), "build", str(ROOT), "--path-output", str(tmp_path), "--config", str(config_file),
         "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    html = tmp_path / "_build" / "html"
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]] + [c["file"] for p in toc["parts"] for c in p["chapters"]]
    for page in pages:
        out = html / f"{page}.html"
        assert out.exists(), f"{page} was not rendered"
    assert (html / "index.html").exists()
    # Stored figures made it into the pages of the lessons.
    for page in pages:
        if (ROOT / f"{page}.ipynb").exists():
            assert "<img" in (html / f"{page}.html").read_text(), f"{page} shows no figure"
