"""Shared fixtures: a real HTTP server on 127.0.0.1 with scripted faults, and the MNIST copy."""

from __future__ import annotations

import http.server
import os
import signal
import threading
from pathlib import Path

import pytest


def _signals_as_a_terminal_gives_them() -> None:
    """A runner that starts the tests in the background or under nohup hands every child
    SIGINT or SIGHUP ignored, and nnctl keeps a signal ignored at start ignored (as nohup
    wants); the tests that send them expect a terminal's defaults."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


_signals_as_a_terminal_gives_them()

# The real MNIST for the end-to-end tests: a folder holding the four .gz files, or the URL of
# a mirror serving them; by default ../shared/mnist beside the project folder.
MNIST_ENV = "NNCTL_TEST_MNIST"
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "mnist"
MNIST_ARCHIVES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from `root`; `faults[path]` is a list of what to do on successive requests:
    an int status code, 'truncate' (half the body, then close), 'stall' (half the body, then
    silence for 3 s), 'reset' (the headers, then a TCP reset), or 'ok'."""

    root: Path
    faults: dict[str, list]
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.requests.append(self.path)
        plan = self.faults.get(self.path)
        action = plan.pop(0) if plan else "ok"
        if isinstance(action, int):
            self.send_error(action)
            return
        file = self.root / self.path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        body = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if action == "reset":
            import socket
            import struct

            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if action == "stall":
            import time

            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(3)
            self.close_connection = True
            return
        if action == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Mirror:
    def __init__(self, root: Path):
        handler = type("Handler", (ScriptedHandler,), {"root": root, "faults": {}, "requests": []})
        self.handler = handler
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def faults(self) -> dict[str, list]:
        return self.handler.faults

    @property
    def requests(self) -> list[str]:
        return self.handler.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    """serve(folder) -> a Mirror on 127.0.0.1 at an ephemeral port, shut down after the test."""
    mirrors = []

    def start(root: Path) -> Mirror:
        mirror = Mirror(Path(root))
        mirrors.append(mirror)
        return mirror

    yield start
    for mirror in mirrors:
        mirror.close()


@pytest.fixture(scope="session")
def shared_mnist(tmp_path_factory) -> Path:
    """A folder with the four MNIST .gz files: $NNCTL_TEST_MNIST (a folder, or a mirror URL
    fetched from once per session), else ../shared/mnist; the test is skipped without them."""
    source = os.environ.get(MNIST_ENV, "").strip()
    if source.startswith(("http://", "https://")):
        return _fetch_archives(source, tmp_path_factory.mktemp("mnist-gz"))
    folder = Path(source).resolve() if source else SHARED_MNIST
    if not all((folder / name).is_file() for name in MNIST_ARCHIVES):
        pytest.skip(f"the real MNIST .gz files are not in {folder}: set {MNIST_ENV} to a folder "
                    "holding them or to a mirror URL")
    return folder


def _fetch_archives(url: str, folder: Path) -> Path:
    import requests

    for name in MNIST_ARCHIVES:
        try:
            response = requests.get(url.rstrip("/") + "/" + name, timeout=(10, 60))
            response.raise_for_status()
        except requests.RequestException as error:
            pytest.skip(f"{MNIST_ENV}={url}: cannot fetch {name} ({error})")
        (folder / name).write_bytes(response.content)
    return folder


@pytest.fixture(scope="session")
def shared_fashion_mnist() -> Path:
    folder = SHARED_MNIST.parent / "fashion-mnist"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real Fashion-MNIST files are not at {folder}")
    return folder


@pytest.fixture(scope="session")
def mnist_cache(tmp_path_factory, shared_mnist) -> Path:
    """A data directory holding the verified real MNIST, filled once per session over HTTP."""
    from nnctl.data.mnist import load_mnist

    mirror = Mirror(shared_mnist)
    try:
        data_dir = tmp_path_factory.mktemp("data")
        load_mnist(data_dir, sources=[mirror.url])
    finally:
        mirror.close()
    return data_dir


@pytest.fixture(params=["blas", "numpy"])
def route(request):
    """Run a test once through the BLAS GEMM (where NumPy's OpenBLAS is found) and once
    through NumPy alone."""
    from nnctl import blas

    if request.param == "blas" and not blas.kernels():
        pytest.skip("no scipy-openblas GEMM found in this NumPy: only the NumPy route runs")
    blas.use_numpy_only(request.param == "numpy")
    yield request.param
    blas.use_numpy_only(False)


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """full_disk(kib) -> a directory whose file system holds only `kib` KiB: a tmpfs mounted
    there when the test may mount one (root), else a patched os.fdopen whose files raise
    ENOSPC once the folder's files would pass that size (the route nnctl's downloads and
    weights files write through)."""
    import errno
    import io
    import os
    import subprocess

    mounted = []

    def make(kib: int) -> Path:
        directory = tmp_path / f"disk{len(mounted)}"
        directory.mkdir()
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs",
                                   str(directory)], capture_output=True)
        except FileNotFoundError:
            done = None
        if done is not None and done.returncode == 0:
            mounted.append(directory)
            return directory
        real = os.fdopen

        class Full(io.BufferedWriter):
            """Writes through at once; refuses what would take the folder past `kib`."""

            def write(self, data) -> int:
                used = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
                if used + len(data) > kib * 1024:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written = super().write(data)
                self.flush()
                return written

        def fdopen(fd, mode="r", *args, **kwargs):
            path = os.readlink(f"/proc/self/fd/{fd}")
            if "w" in mode and path.startswith(str(directory)):
                return Full(real(fd, "wb", buffering=0))
            return real(fd, mode, *args, **kwargs)

        monkeypatch.setattr(os, "fdopen", fdopen)
        return directory

    yield make
    for directory in mounted:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)
