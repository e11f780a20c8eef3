"""``fusionsim serve``: the fusion service of ``experiments.serving`` over HTTP (FastAPI on uvicorn)."""

from __future__ import annotations

import gc
import importlib.util
import socket
from pathlib import Path

from fusionsim.experiments.serving.service import FusionService, ServeConfig, ServeError

INSTALL_HINT = "fusionsim serve needs the serve extra (FastAPI, uvicorn): pip install -e \".[serve]\""


def check_serve_extra() -> None:
    """A one-line ServeError saying how to install the server when FastAPI or uvicorn is missing."""
    if any(importlib.util.find_spec(name) is None for name in ("fastapi", "uvicorn")):
        raise ServeError(INSTALL_HINT)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port); a ServeError naming them when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio then sets TCP_NODELAY on every accepted connection (with 0 it does not,
    # and Nagle's algorithm meeting delayed ACKs holds each small answer for 40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"--host {host} --port {port} cannot be listened on ({exc.strerror or exc})") from None
    sock.listen(2048)
    return sock


def serve(config: ServeConfig, log_dir: Path, host: str, port: int, announce=print) -> None:
    """Serve ``config.policy`` on ``host``:``port`` until interrupted (SIGINT or SIGTERM), logging to
    ``log_dir``; ``announce`` gets the line with the address once the server listens."""
    check_serve_extra()
    import uvicorn

    from fusionsim.experiments.serving.app import create_app

    service = FusionService(config, log_dir)
    sock = bind(host, port)
    address = sock.getsockname()
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=10))
    announce(f"serving {config.policy} ({service.served.agent}, {len(service.served.arm_names)} arms"
             f"{', learning' if config.learn else ''}) on http://{address[0]}:{address[1]}; decisions go to "
             f"{log_dir}/decisions")
    gc.collect()
    gc.freeze()  # what startup built (torch, the policy, the modules) is never traversed by the collector again
    server.run(sockets=[sock])  # on uvloop when it is installed (the serve extra installs it)
