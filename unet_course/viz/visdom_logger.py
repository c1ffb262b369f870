"""Live training curves in a visdom server: a callback for :func:`unet_course.train.fit`."""

from __future__ import annotations

import socket
import urllib.parse
import warnings

__all__ = ["VisdomLogger"]


class VisdomLogger:
    """A :func:`unet_course.train.fit` callback that draws live curves in a visdom server.

    Start a server with ``python -m visdom.server`` (``pip install "unet-course[visdom]"``),
    then ``fit(..., callbacks=[VisdomLogger()])`` and open http://localhost:8097. The loss goes
    to the window ``"<prefix>loss"``, validation metrics to ``"<prefix>val"``.

    If visdom is not installed or no server answers, the logger prints one line saying so and
    does nothing afterwards: training goes on.
    """

    def __init__(self, server: str = "http://127.0.0.1", port: int = 8097, env: str = "unet_course",
                 prefix: str = "", timeout_s: float = 3.0):
        self.env, self.prefix, self.vis = env, prefix, None
        self._windows: set[str] = set()
        try:
            import visdom
        except ImportError:
            print('visdom is not installed (pip install "unet-course[visdom]"); live curves are off')
            return
        # Ask the port first: visdom's client prints several lines of tracebacks when no server
        # answers, and we promise one clear line instead.
        host = urllib.parse.urlparse(server).hostname or server
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError:
            print(f"no visdom server at {server}:{port} (start one with `python -m visdom.server`); "
                  "live curves are off, training goes on")
            return
        with warnings.catch_warnings():
            # visdom 0.2.4 calls the deprecated Logger.warn to say there is no incoming socket,
            # which is what we ask for: we only send curves.
            warnings.simplefilter("ignore", DeprecationWarning)
            client = visdom.Visdom(server=server, port=port, env=env, use_incoming_socket=False,
                                   raise_exceptions=False)
        self.vis = client

    @property
    def active(self) -> bool:
        return self.vis is not None

    def _append(self, win: str, x: float, y: float, name: str, title: str) -> None:
        # The first point creates the window; later ones append to (or start) the named trace.
        self.vis.line(X=[x], Y=[y], win=win, env=self.env, name=name,
                      update="append" if win in self._windows else None,
                      opts=dict(title=title, xlabel="step", showlegend=True))
        self._windows.add(win)

    def __call__(self, event: dict) -> None:
        if self.vis is None:
            return
        if "loss" in event:
            self._append(self.prefix + "loss", event["step"], event["loss"], "train", "training loss")
        for key, value in event.get("val", {}).items():
            self._append(self.prefix + "val", event["step"], value, key, "validation")
