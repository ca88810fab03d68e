"""Running the web app with uvicorn on a socket bound here, so bind errors are one line."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Callable

from nnctl.errors import NnctlError, UsageError
from nnctl.extras import install_command

INSTALL_HINT = ("nnctl serve needs the serve extra; install it with: "
                + install_command("starlette>=0.40", "uvicorn>=0.30", "python-multipart>=0.0.18"))
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"]


def require_extra() -> None:
    """A UsageError naming what to install when Starlette, uvicorn or python-multipart is
    missing."""
    try:
        import python_multipart  # noqa: F401 - Starlette's form parser
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port (port 0: one the system picks)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise UsageError(f"--host {host}: not an address of this machine ({error.strerror})"
                         ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    except OSError as error:
        sock.close()
        hint = "; pick another with --port" if error.errno == 98 else ""
        raise NnctlError(f"cannot listen on {host}:{port} ({error.strerror}){hint}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address; this machine's loopback one for a socket on every address."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve(weights: Path, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False,
          say: Callable[[str], None] = print, warn: Callable[[str], None] | None = None) -> None:
    """Load the weights once, bind, say where the page is, and serve until Ctrl-C."""
    require_extra()
    import uvicorn

    from nnctl import weights as weights_file
    from nnctl.serve.app import create_app

    warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
    checkpoint = weights_file.load(weights)
    sock = bind(host, port)
    address = sock.getsockname()[0]
    loopback = is_loopback(address)
    if not loopback:
        warn(f"warning: listening on {address}: anyone who can reach this machine can use "
             f"the page and the API (the default, 127.0.0.1, is this machine alone)")
    allowed = sorted({*LOOPBACK_NAMES, host}) if loopback else None
    app = create_app(checkpoint, Path(weights).name, workers=min(4, os.cpu_count() or 1),
                     allowed_hosts=allowed)
    url = url_of(sock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="off"))
    say(f"nnctl serve: {weights} at {url} (Ctrl-C to stop)")
    if open_browser:
        threading.Thread(target=_open_when_started, args=(server, url), daemon=True).start()
    server.run(sockets=[sock])


def _open_when_started(server, url: str) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        webbrowser.open(url)
