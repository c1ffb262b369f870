"""Tests for unet_course.data: the generators, the ISBI 2012 loader and the tile sampler."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage as ndi

from unet_course.data import (
    ISBI2012,
    DownloadError,
    ManifestEntry,
    TileDataset,
    data_dir,
    download_files,
    read_manifest,
    synthetic_em,
    touching_cells,
)

GENERATORS = [(synthetic_em, 128), (touching_cells, 96)]


def _touching_pairs(instances: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of distinct cell ids that share a 4-neighbour edge."""
    pairs = set()
    for a, b in ((instances[:-1], instances[1:]), (instances[:, :-1], instances[:, 1:])):
        sel = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[sel].tolist(), b[sel].tolist())}
    return pairs


@pytest.mark.parametrize("gen,size", GENERATORS)
def test_shapes_dtypes_ranges(gen, size):
    images, masks, instances = gen(3, size=size, seed=1)
    assert images.shape == masks.shape == instances.shape == (3, size, size)
    assert images.dtype == np.float32 and masks.dtype == np.int64 and instances.dtype == np.int32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(np.unique(masks).tolist()) == {0, 1}
    np.testing.assert_array_equal(masks, (instances > 0).astype(np.int64))
    for ins in instances:
        ids = np.unique(ins)
        # ids are 0 plus 1..k without gaps
        np.testing.assert_array_equal(ids, np.arange(ids.max() + 1))
        assert ids.max() >= 3


@pytest.mark.parametrize("gen,size", GENERATORS)
def test_same_seed_same_arrays_and_image_i_independent_of_n(gen, size):
    a = gen(3, size=size, seed=7)
    b = gen(3, size=size, seed=7)
    c = gen(1, size=size, seed=7)
    d = gen(1, size=size, seed=8)
    for x, y, z in zip(a, b, c):
        assert x.tobytes() == y.tobytes()
        assert x[:1].tobytes() == z.tobytes()
    assert not np.array_equal(a[0][0], d[0][0])
    assert not np.array_equal(a[0][0], a[0][1])


@pytest.mark.parametrize("gen,size", GENERATORS)
def test_zero_images(gen, size):
    images, _, _ = gen(0, size=size)
    assert images.shape == (0, size, size)


@pytest.mark.parametrize("gen", [synthetic_em, touching_cells])
@pytest.mark.parametrize(
    "kwargs,err",
    [
        ({"n": -1}, ValueError),
        ({"n": 2.0}, TypeError),
        ({"n": 1, "size": 8}, ValueError),
        ({"n": 1, "seed": -3}, ValueError),
    ],
)
def test_bad_arguments(gen, kwargs, err):
    with pytest.raises(err):
        gen(**kwargs)


def test_synthetic_em_membranes_and_thresholding():
    images, masks, _ = synthetic_em(2, size=256, seed=0)
    membrane = 1.0 - masks.mean()
    assert 0.15 <= membrane <= 0.25
    # membranes are darker than cells on average ...
    assert images[masks == 0].mean() < images[masks == 1].mean() - 0.2
    # ... but no global threshold separates them: the best one still gets >= 5 % wrong, and
    # the dark organelles it calls "membrane" lie inside cells, away from any membrane
    thresholds = np.linspace(0, 1, 201)
    errors = [np.mean((images > t) != (masks == 1)) for t in thresholds]
    best = thresholds[int(np.argmin(errors))]
    assert min(errors) > 0.05
    far_inside = ndi.distance_transform_edt(masks) > 6
    false_membrane = (images <= best) & far_inside
    assert false_membrane.sum() > 0.005 * masks.size


def test_synthetic_em_membrane_thickness_varies():
    _, masks, _ = synthetic_em(1, size=512, seed=3)
    # local membrane half-width: the distance to the cell interior, maximal along the membrane's
    # centre line; it should take clearly different values across the image
    inner = ndi.distance_transform_edt(masks[0] == 0)
    ridge = inner[(inner >= ndi.maximum_filter(inner, 3)) & (inner > 0)]
    assert np.percentile(ridge, 90) >= 1.8 * np.percentile(ridge, 10)


def test_touching_cells_touch():
    images, masks, instances = touching_cells(2, size=256, seed=0)
    for img, msk, ins in zip(images, masks, instances):
        pairs = _touching_pairs(ins)
        assert len(pairs) >= 5
        # a binary mask labelled into components merges touching cells
        n_components = ndi.label(msk)[1]
        assert n_components < ins.max()
        # cells are brighter than the background
        assert img[msk == 1].mean() > img[msk == 0].mean() + 0.2
    # cell size does not scale with the image: four times the area holds more cells
    big = touching_cells(1, size=512, seed=0)[2]
    assert big.max() > 2 * instances[0].max()


def test_synthetic_em_is_fast():
    synthetic_em(1, size=512, seed=0)  # warm up
    t0 = time.perf_counter()
    synthetic_em(2, size=512, seed=1)
    # generous bound for a loaded 2-core CI machine; typically about 0.2 s per image
    assert (time.perf_counter() - t0) / 2 < 2.0


# ------------------------------------------------------------------ downloads and ISBI 2012

def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def isbi_files():
    """Three test-made slices as PNG bytes, their arrays and a matching manifest."""
    rng = np.random.default_rng(0)
    files, arrays = {}, {}
    for i in range(3):
        img = rng.integers(0, 256, size=(24, 32), dtype=np.uint8)
        lab = np.where(rng.random((24, 32)) > 0.3, 255, 0).astype(np.uint8)
        files[f"image/{i}.png"], files[f"label/{i}.png"] = _png_bytes(img), _png_bytes(lab)
        arrays[i] = (img, lab)
    manifest = [ManifestEntry(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()]
    return files, arrays, manifest


class _Server:
    """A local HTTP server on 127.0.0.1 (free port) that serves a dict of files.

    ``truncate`` maps a path to the number of bytes sent before the connection is closed,
    while the Content-Length header still announces the full size.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files, self.truncate, self.requests = dict(files), {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("/data/", 1)[-1]
                server.requests.append(path)
                body = server.files.get(path)
                if body is None:
                    self.send_error(404, "no such file")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.truncate.get(path)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file() and ".part" in p.name)


def test_download_success_and_loading(tmp_path, isbi_files):
    files, arrays, manifest = isbi_files
    with _Server(files) as srv:
        ds = ISBI2012(tmp_path, download=True, base_url=srv.url, manifest=manifest, timeout=5)
        assert sorted(srv.requests) == sorted(files)
        assert len(ds) == 3 and ds.source == "png"
        for i in range(3):
            image, mask = ds[i]
            assert image.dtype == np.float32 and mask.dtype == np.int64
            np.testing.assert_allclose(image, arrays[i][0] / 255.0, atol=1e-7)
            np.testing.assert_array_equal(mask, arrays[i][1] == 255)
        for path, body in files.items():
            assert (tmp_path / path).read_bytes() == body
        # a second time nothing is fetched: the files on disk match the manifest
        ISBI2012(tmp_path, download=True, base_url=srv.url, manifest=manifest, timeout=5)
        assert len(srv.requests) == len(files)
        # and without download=True they are simply read
        assert len(ISBI2012(tmp_path, manifest=manifest)) == 3
    assert _leftovers(tmp_path) == []


def test_isbi_repr_shows_the_home_directory_as_tilde(tmp_path, isbi_files, monkeypatch):
    files, _, manifest = isbi_files
    for path, body in files.items():
        (tmp_path / "home" / "data" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "home" / "data" / path).write_bytes(body)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ds = ISBI2012(tmp_path / "home" / "data", manifest=manifest)
    assert repr(ds) == "ISBI2012(root='~/data', 3 slices from png)"  # no machine's path


def test_corrupted_file_is_rejected_and_not_kept(tmp_path, isbi_files):
    files, _, manifest = isbi_files
    bad = dict(files)
    bad["image/1.png"] = files["image/1.png"][:-4] + b"XXXX"  # same size, other content
    with _Server(bad) as srv, pytest.raises(DownloadError) as err:
        ISBI2012(tmp_path, download=True, base_url=srv.url, manifest=manifest, timeout=5)
    msg = str(err.value)
    assert "image/1.png" in msg and srv.url + "image/1.png" in msg and "sha256" in msg
    assert str(tmp_path / "image" / "1.png") in msg and "by hand" in msg
    assert not (tmp_path / "image" / "1.png").exists()
    assert _leftovers(tmp_path) == []


def test_missing_file_names_file_and_url(tmp_path, isbi_files):
    files, _, manifest = isbi_files
    partial = {k: v for k, v in files.items() if k != "label/2.png"}
    with _Server(partial) as srv, pytest.raises(DownloadError) as err:
        ISBI2012(tmp_path, download=True, base_url=srv.url, manifest=manifest, timeout=5)
    msg = str(err.value)
    assert "label/2.png" in msg and srv.url + "label/2.png" in msg and "404" in msg
    assert not (tmp_path / "label" / "2.png").exists()
    assert _leftovers(tmp_path) == []


def test_interrupted_transfer_leaves_no_complete_looking_file(tmp_path, isbi_files):
    files, _, manifest = isbi_files
    with _Server(files) as srv:
        srv.truncate["image/2.png"] = len(files["image/2.png"]) // 2
        with pytest.raises(DownloadError) as err:
            ISBI2012(tmp_path, download=True, base_url=srv.url, manifest=manifest, timeout=5)
        assert "image/2.png" in str(err.value)
        assert not (tmp_path / "image" / "2.png").exists()
        assert _leftovers(tmp_path) == []
        # the files that arrived completely are kept; a retry fetches only what is missing
        done = len(srv.requests)
        del srv.truncate["image/2.png"]
        ISBI2012(tmp_path, download=True, base_url=srv.url, manifest=manifest, timeout=5)
        assert "image/2.png" in srv.requests[done:]
        assert len(srv.requests[done:]) < len(files)


def test_offline_error_is_clear(tmp_path, isbi_files):
    _, _, manifest = isbi_files
    with _Server({}) as srv:
        url = srv.url
    # the server is shut down: the port refuses connections, as when offline
    with pytest.raises(DownloadError, match="could not download"):
        download_files(manifest[:1], url, tmp_path, timeout=5)
    assert _leftovers(tmp_path) == []


def test_without_download_missing_files_say_what_to_do(tmp_path, isbi_files):
    _, _, manifest = isbi_files
    with pytest.raises(FileNotFoundError) as err:
        ISBI2012(tmp_path, manifest=manifest)
    msg = str(err.value)
    assert str(tmp_path) in msg and "download=True" in msg and "train-volume.tif" in msg


def test_hand_placed_file_with_wrong_hash(tmp_path, isbi_files):
    files, _, manifest = isbi_files
    for path, body in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(body)
    other = _png_bytes(np.zeros((24, 32), np.uint8))
    (tmp_path / "image/0.png").write_bytes(other)
    with pytest.raises(ValueError, match="verify=False"):
        ISBI2012(tmp_path, manifest=manifest)
    assert ISBI2012(tmp_path, manifest=manifest, verify=False)[0][0].max() == 0.0


def test_reads_official_tiff_stacks(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 256, size=(4, 20, 30), dtype=np.uint8)
    lab = np.where(rng.random((4, 20, 30)) > 0.5, 255, 0).astype(np.uint8)
    for name, stack in (("train-volume.tif", vol), ("train-labels.tif", lab)):
        pages = [Image.fromarray(s) for s in stack]
        pages[0].save(tmp_path / name, save_all=True, append_images=pages[1:])
    ds = ISBI2012(tmp_path)
    assert ds.source == "tif" and len(ds) == 4
    np.testing.assert_allclose(ds.images, vol / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ds.masks, lab == 255)
    assert len(ds[1:3]) == 2


def test_shipped_manifest_and_cache_dir(monkeypatch, tmp_path):
    from unet_course._manifests import ISBI2012_BASE_URL, ISBI2012_MANIFEST_CSV

    entries = read_manifest(ISBI2012_MANIFEST_CSV)
    assert len(entries) == 60
    assert {e.path for e in entries} == {f"{k}/{i}.png" for k in ("image", "label")
                                         for i in range(30)}
    assert all(len(e.sha256) == 64 and e.size > 0 for e in entries)
    assert ISBI2012_BASE_URL.startswith("https://raw.githubusercontent.com/zhixuhao/unet/")
    monkeypatch.setenv("UNET_COURSE_DATA", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "cache" / "isbi2012")):
        ISBI2012()
    monkeypatch.delenv("UNET_COURSE_DATA")
    assert data_dir() == Path.home() / ".cache" / "unet_course"
    # read_manifest also takes a path
    (tmp_path / "m.csv").write_text(ISBI2012_MANIFEST_CSV)
    assert read_manifest(tmp_path / "m.csv") == entries


# ------------------------------------------------------------------ tile sampling


def test_tiles_are_mirrored_windows_with_centred_targets():
    rng = np.random.default_rng(0)
    images = rng.random((2, 40, 50)).astype(np.float32)
    masks = (rng.random((2, 40, 50)) > 0.5).astype(np.int64)
    weights = rng.random((2, 40, 50)).astype(np.float32)
    ds = TileDataset(images, masks, input_size=36, output_size=20, weight_maps=weights, length=50)
    m = 8
    hits = 0
    for i in range(len(ds)):
        x, y, w = ds[i]
        assert x.shape == (1, 36, 36) and y.shape == (20, 20) and w.shape == (20, 20)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and w.dtype == torch.float32
        # find the image and the output tile's corner from the target (targets never mirror)
        for k in range(2):
            padded = np.pad(images[k], m, mode="reflect")
            for oy in range(40 - 20 + 1):
                for ox in range(50 - 20 + 1):
                    if np.array_equal(y.numpy(), masks[k, oy : oy + 20, ox : ox + 20]) and \
                            np.array_equal(w.numpy(), weights[k, oy : oy + 20, ox : ox + 20]):
                        # the input is the mirror-padded window around it
                        np.testing.assert_array_equal(x[0].numpy(), padded[oy : oy + 36, ox : ox + 36])
                        hits += 1
    assert hits >= len(ds)  # every tile was found (random masks make false matches negligible)
    # reproducible per (seed, epoch, index)
    a, b = ds[3], ds[3]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], a[0])


def test_tiles_with_augmentation_stay_aligned():
    from unet_course.augment import Compose, ElasticDeform, RandomFlip

    _, masks, instances = synthetic_em(1, size=128, seed=0)
    images = masks.astype(np.float32)  # the image shows the mask, to check alignment
    ds = TileDataset(images, instances, input_size=92, output_size=60, length=4,
                     augment=Compose([RandomFlip(), ElasticDeform(sigma=10.0)]))
    for i in range(4):
        x, y = ds[i]
        centre, cells = x[0, 16:76, 16:76].numpy(), (y.numpy() > 0).astype(np.float32)
        flat = ndi.minimum_filter(cells, 5) == ndi.maximum_filter(cells, 5)
        np.testing.assert_allclose(centre[flat], cells[flat], atol=0.1)


def test_tile_dataset_bad_arguments():
    img, msk = np.zeros((1, 32, 32), np.float32), np.zeros((1, 32, 32), np.int64)
    with pytest.raises(ValueError, match="even margin"):
        TileDataset(img, msk, 32, 21)
    with pytest.raises(ValueError, match="one mask"):
        TileDataset(img, msk[:0], 32, 20)
    with pytest.raises(ValueError, match="shape"):
        TileDataset(img, np.zeros((1, 30, 32), np.int64), 32, 20)
    with pytest.raises(IndexError):
        TileDataset(img, msk, 32, 20, length=2)[2]
