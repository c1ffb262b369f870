"""Live curves through a real visdom server on 127.0.0.1 (its script download is skipped)."""

import json
import socket
import subprocess
import sys
import time

import pytest
import torch

from unet_course import UNet
from unet_course.train import fit
from unet_course.viz import VisdomLogger

visdom = pytest.importorskip("visdom", reason='pip install "unet-course[visdom]"')

SERVER = """
import sys
from visdom.server.run_server import main
sys.argv = ["visdom", "-port", sys.argv[1], "--hostname", "127.0.0.1", "-env_path", sys.argv[2],
            "-bind_local", "-logging_level", "ERROR"]
main()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def visdom_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the visdom server did not start (exit code {proc.poll()})")
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class TinyTiles(torch.utils.data.Dataset):
    """Random 44x44 tiles and 4x4 targets for a depth-2 valid net with 2 base channels."""

    def __init__(self, n=4):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, 44, 44, generator=g)
        self.y = torch.randint(0, 2, (n, 4, 4), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_fit_logs_the_loss_curve_to_visdom(visdom_server, capsys):
    net = UNet(depth=2, base_channels=2, dropout=0.0)
    assert net.output_size(44) == 4
    logger = VisdomLogger(port=visdom_server, env="test_run")
    assert logger.active
    history = fit(net, TinyTiles(), steps=6, log_every=2, callbacks=[logger], progress=False, lr=1e-3)
    # Read the window back from the server (through the logger's own client connection).
    data = json.loads(logger.vis.get_window_data(win="loss", env="test_run"))
    trace = data["content"]["data"][0]
    expected = [sum(history.loss[i:i + 2]) / 2 for i in (0, 2, 4)]
    assert trace["x"] == [2, 4, 6]
    assert trace["y"] == pytest.approx(expected)


def test_without_a_server_one_line_and_training_goes_on(capsys):
    logger = VisdomLogger(port=free_port(), timeout_s=0.5)
    out = capsys.readouterr()
    assert not logger.active
    assert out.out.count("\n") == 1 and "no visdom server" in out.out
    assert out.err == ""
    history = fit(UNet(depth=2, base_channels=2), TinyTiles(), steps=2, callbacks=[logger], progress=False)
    assert len(history.loss) == 2
