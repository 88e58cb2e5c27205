"""``fastfill serve``: the HTTP API and the painting page (extra ``serve``: FastAPI + uvicorn).

    from fastfill.serve import create_app, ServeLimits
    app = create_app(fastfill.Inpainter(), ServeLimits(max_pixels=20_000_000))

:func:`serve` loads the model, prints where it listens and runs uvicorn until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import ipaddress
import sys

from ..errors import InputError


def _missing(e: ImportError):
    raise InputError(f"fastfill serve needs the 'serve' extra: pip install 'fastfill[serve]' "
                     f"({e.name or e} is not installed)") from None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(inpainter, *, host: str = "127.0.0.1", port: int = 8080, limits=None, token: str | None = None,
          model_name: str | None = None, echo=None) -> None:
    """Serve ``inpainter`` on ``host:port`` until interrupted (blocking)."""
    try:
        import uvicorn

        from .app import ServeLimits, configure_logging, create_app
    except ImportError as e:
        _missing(e)
    import os

    echo = echo or (lambda s: print(s, file=sys.stderr))
    limits = limits or ServeLimits()
    configure_logging(bool(os.environ.get("FASTFILL_DEBUG")))
    app = create_app(inpainter, limits, token=token, model_name=model_name)
    server = app.state.server
    cfg = server.config()
    echo(f"fastfill {cfg['version']}: {model_name or 'model'} ({cfg['model']['kind']}, prefill "
         f"{cfg['model']['fill']}) on {cfg['backend_selection'] or cfg['backend']} ({cfg['device']}); batches of up to "
         f"{cfg['limits']['max_batch']}, queue {limits.queue}, {limits.workers} decode/encode threads")
    echo(f"limits: {limits.max_pixels / 1e6:g} megapixels per image, {limits.max_body} bytes per request")
    if token:
        echo("API requests need: Authorization: Bearer <token>")
    elif not is_loopback(host):
        echo(f"warning: listening on {host}, reachable from other machines, and the API has no "
             "authentication: anyone who can reach it can use it (set --token or FASTFILL_TOKEN)")
    shown = f"[{host}]" if ":" in host else host
    echo(f"page: http://{shown}:{port}/   API docs: http://{shown}:{port}/docs   (Ctrl-C to stop)")
    # Connections (idle keep-alive ones included) past this bound get 503 from uvicorn itself:
    # each may hold a request body in memory.
    concurrency = max(64, 4 * (limits.queue + limits.workers))
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                            limit_concurrency=concurrency, timeout_keep_alive=5,
                            server_header=False, lifespan="on")
    uvicorn.Server(config).run()


def create_app(*args, **kwargs):
    """See :func:`fastfill.serve.app.create_app`."""
    try:
        from .app import create_app as _create
    except ImportError as e:
        _missing(e)
    return _create(*args, **kwargs)


__all__ = ["serve", "create_app", "is_loopback"]
