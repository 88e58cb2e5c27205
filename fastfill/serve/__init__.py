"""``fastfill serve``: the HTTP API and the painting page (extra ``serve``: FastAPI + uvicorn).

    from fastfill.serve import create_app
    from fastfill.serve.app import ServeLimits
    app = create_app(fastfill.Inpainter(), ServeLimits(max_pixels=20_000_000))

:func:`serve` loads the model, prints where it listens and runs uvicorn until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

# The most pixels a request's fill (and a batch's) may work over, its windows: a long diagonal
# stroke's windows are the whole image, and a 110 kB request of 20 megapixels drove the server
# to 4 GB. 16 megapixels: about 3.4 GB for the default fill (--max-fill-pixels).
DEFAULT_MAX_FILL_PIXELS = 16_000_000

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


def check_token(token: str | None) -> bytes | None:
    """The bearer token as bytes (compared as bytes: a client's non-ASCII header is then just a
    wrong token); :class:`InputError` for one no client can send in an HTTP header."""
    if token is None:
        return None
    if not token or not all("!" <= c <= "~" for c in token):
        raise InputError("the token must be printable ASCII without spaces or control characters "
                         "(it travels in an HTTP header)")
    return token.encode("ascii")


def check_cors_origin(origin: str) -> str:
    """A web origin allowed to call the API from a browser (``--cors-origin``), normalised as
    browsers send it in ``Origin`` (lower-case scheme and host, no default port); ``*`` for any.
    :class:`InputError` for anything else (a path, a trailing slash, a scheme other than http(s)):
    such an origin would never match and the browser would refuse every answer, silently."""
    from urllib.parse import urlsplit

    text = str(origin).strip()
    if text == "*":
        return text
    hint = ("an origin is scheme://host[:port] as a browser sends it in its Origin header, "
            "e.g. http://localhost:5173 (or * for any)")
    try:
        u = urlsplit(text)
        port = u.port
    except ValueError:
        raise InputError(f"CORS origin {origin!r}: not an origin; {hint}") from None
    if u.scheme.lower() not in ("http", "https") or not u.hostname:
        raise InputError(f"CORS origin {origin!r}: not an http(s) origin; {hint}")
    if u.path or u.query or u.fragment or "@" in u.netloc or text.endswith(("?", "#")):
        raise InputError(f"CORS origin {origin!r}: an origin has no path (not even a trailing /), "
                         f"query or user; {hint}")
    scheme, host = u.scheme.lower(), u.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _file_limit(max_connections: int, echo) -> None:
    """Raise the open-file limit to fit --max-connections (each connection is a file)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = max_connections + 256  # the model, logs, the listening socket
        if soft != resource.RLIM_INFINITY and soft < need:
            soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    except (ImportError, ValueError, OSError):
        return
    if soft != resource.RLIM_INFINITY and soft < need:
        echo(f"warning: the open-file limit ({soft}) is below --max-connections + 256: connections "
             "past it wait unaccepted")


def serve(inpainter, *, host: str = "127.0.0.1", port: int = 8080, limits=None, token: str | None = None,
          model_name: str | None = None, cors_origins=(), echo=None) -> None:
    """Serve ``inpainter`` on ``host:port`` until interrupted (blocking)."""
    try:
        import uvicorn

        from .app import ServeLimits, configure_logging, create_app, protocol_class
    except ImportError as e:
        _missing(e)
    import os

    echo = echo or (lambda s: print(s, file=sys.stderr))
    limits = limits or ServeLimits()
    configure_logging(bool(os.environ.get("FASTFILL_DEBUG")))
    app = create_app(inpainter, limits, token=token, model_name=model_name, cors_origins=cors_origins)
    server = app.state.server
    cfg = server.config()
    echo(f"fastfill {cfg['version']}: {model_name or 'model'} ({cfg['model']['kind']}, prefill "
         f"{cfg['model']['fill']}; runs {cfg['model']['runs']}) on {cfg['backend_selection'] or cfg['backend']} "
         f"({cfg['device']}); batches of up to "
         f"{cfg['limits']['max_batch']}, queue {limits.queue}, {limits.io_threads} decode/encode threads")
    echo(f"limits: {limits.max_pixels / 1e6:g} megapixels per image, "
         f"{limits.max_fill_pixels / 1e6:g} filled per request, {limits.max_body} bytes per request, "
         f"{limits.max_requests} requests in flight, {limits.max_connections} open connections; "
         f"headers within {limits.header_timeout:g} s, bodies within {limits.body_timeout:g} s")
    if cors_origins:
        shown_origins = ", ".join(dict.fromkeys(check_cors_origin(o) for o in cors_origins))
        echo(f"CORS: pages from {shown_origins} may call the API from a browser")
    if token:
        echo("API requests need: Authorization: Bearer <token>")
    elif not is_loopback(host):
        echo(f"warning: listening on {host}, reachable from other machines, and the API has no "
             "authentication: anyone who can reach it can use it (set --token or FASTFILL_TOKEN)")
    _can_listen(host, port)  # (a port in use: one line, before the banner names it)
    shown = f"[{host}]" if ":" in host else host
    _file_limit(limits.max_connections, echo)
    # uvicorn's limit_concurrency counts every open connection, half-open ones included, so slow
    # clients could starve real requests: the app bounds requests in flight, the protocol bounds
    # connections and times out slow headers and bodies.
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                            http=protocol_class(limits), limit_concurrency=None, timeout_keep_alive=5,
                            server_header=False, lifespan="on",
                            timeout_graceful_shutdown=SHUTDOWN_GRACE)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:  # (the port it got: --port 0 takes a free one)
                got = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
                echo(f"page: http://{shown}:{got}/   API docs: http://{shown}:{got}/docs   (Ctrl-C to stop)")

    Server(config).run()


# On SIGTERM or Ctrl-C, requests in flight get this long to finish (a stalled upload would hold
# the exit for up to --body-timeout otherwise); then their connections are closed.
SHUTDOWN_GRACE = 30.0


def _can_listen(host: str, port: int) -> None:
    """A FastfillError saying why ``host:port`` cannot be listened on (a port in use, a host this
    machine is not), found by binding it once; uvicorn binds it again to serve (a socket bound
    here and handed over answered an early 413 with a reset more often)."""
    import socket

    from ..errors import FastfillError

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (as asyncio binds)
            sock.bind(addr)
    except OSError as e:
        raise FastfillError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def create_app(*args, **kwargs):
    """See :func:`fastfill.serve.app.create_app`."""
    try:
        from .app import create_app as _create
    except ImportError as e:
        _missing(e)
    return _create(*args, **kwargs)


__all__ = ["serve", "create_app", "is_loopback", "check_token", "check_cors_origin"]
