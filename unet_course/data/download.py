"""Downloads that never leave a half-written file: manifests, the cache folder, verified fetches.

A data set that cannot be generated (ISBI 2012) is fetched file by file from a pinned URL and
checked against a manifest of sizes and sha256 hashes shipped with the package
(:mod:`unet_course._manifests`). Each file goes to a temporary name first and is renamed into
place only once verified, so a file found at its final path is always complete.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..validation import finite_number

__all__ = ["DownloadError", "ManifestEntry", "data_dir", "download_files", "file_matches",
           "read_manifest"]


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a data set: its path relative to the data set's folder, size, sha256."""

    path: str
    size: int
    sha256: str


def read_manifest(source: str | os.PathLike) -> list[ManifestEntry]:
    """Parse a manifest: CSV text with the header ``path,size,sha256``, or a path to such a file."""
    text = source
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source):
        text = Path(source).read_text()
    rows = list(csv.DictReader(io.StringIO(str(text))))
    if not rows or set(rows[0]) != {"path", "size", "sha256"}:
        raise ValueError("a manifest is CSV with the header 'path,size,sha256' and one row per file")
    return [ManifestEntry(r["path"], int(r["size"]), r["sha256"].lower()) for r in rows]


def data_dir() -> Path:
    """Where downloaded data go: ``$UNET_COURSE_DATA``, else ``~/.cache/unet_course``."""
    env = os.environ.get("UNET_COURSE_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unet_course"


class DownloadError(OSError):
    """A file could not be downloaded or did not match its manifest entry.

    The message names the file, the URL and how to place the file by hand.
    """


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_matches(path: Path, entry: ManifestEntry) -> bool:
    """True if ``path`` is a file of the entry's size and sha256 (size first: it is cheap)."""
    return path.is_file() and path.stat().st_size == entry.size and _sha256(path) == entry.sha256


def _by_hand(entry: ManifestEntry, url: str, dest: Path) -> str:
    return (
        f"To place it by hand, download {url} on a machine with internet access and save it as "
        f"{dest} (it must be {entry.size} bytes with sha256 {entry.sha256})."
    )


def _fetch_one(entry: ManifestEntry, base_url: str, root: Path, timeout: float) -> Path:
    url = base_url.rstrip("/") + "/" + entry.path
    dest = root / entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name in the same folder: the final rename is atomic, so a file at `dest`
    # is always complete and verified, whatever happens during the transfer
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                h.update(chunk)
                n += len(chunk)
        if n != entry.size:
            raise DownloadError(
                f"{entry.path}: got {n} bytes from {url}, expected {entry.size} (the transfer was "
                f"cut short or the file changed). {_by_hand(entry, url, dest)}"
            )
        if h.hexdigest() != entry.sha256:
            raise DownloadError(
                f"{entry.path}: the file from {url} has sha256 {h.hexdigest()}, expected "
                f"{entry.sha256} (corrupted or a different version). {_by_hand(entry, url, dest)}"
            )
        os.replace(tmp, dest)
        return dest
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
            exc.close()  # an HTTPError holds the open response: release its socket now
        elif isinstance(exc, urllib.error.URLError):
            reason = f"{type(exc).__name__}: {exc.reason}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise DownloadError(
            f"{entry.path}: could not download {url} ({reason}). "
            f"{_by_hand(entry, url, dest)}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def download_files(
    manifest: Sequence[ManifestEntry], base_url: str, root: str | os.PathLike, timeout: float = 30.0
) -> list[Path]:
    """Make ``root`` hold every file of ``manifest``, verified; fetch only what is missing or wrong.

    Each file is fetched from ``base_url + path`` into a temporary name, checked against its
    size and sha256, then renamed into place: a failed or partial transfer never leaves a file
    that looks complete. Raises :class:`DownloadError` naming the file, the URL and how to
    place the file by hand. Returns the paths of all files.
    """
    timeout = finite_number(timeout, "timeout (seconds)", minimum=0.0, strict=True)
    root = Path(root)
    paths = []
    for entry in manifest:
        dest = root / entry.path
        if not file_matches(dest, entry):
            _fetch_one(entry, base_url, root, timeout)
        paths.append(dest)
    return paths

