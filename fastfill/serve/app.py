"""The HTTP API and the painting page (``fastfill serve``; extra ``serve``).

FastAPI on uvicorn: FastAPI for the OpenAPI schema and its docs page (served from the package
through ``fastapi-offline``: no CDN, so ``/docs`` works offline like the page), Starlette's
multipart parser, and uvicorn as the well-kept ASGI server. The server is one more client of
:class:`fastfill.Inpainter`: requests are decoded on ``io_threads`` threads (the CLI's decoding rules:
raster allow-list, pixel limit, EXIF orientation), filled in micro-batches on one inference thread
(:mod:`fastfill.serve.batcher`) and encoded back in the input's format.

Every error is a JSON body ``{"error": "...", "status": N, "detail": "...", "errors": "..."}``
(``detail`` and ``errors``, the same message, are where IOPaint's web app and FastAPI clients look);
no traceback ever leaves the process (``FASTFILL_DEBUG=1`` logs it on the server).

IOPaint's and lama-cleaner's own web apps and scripts work against it too: their routes are in
:mod:`fastfill.serve.compat`; what both modules' routes share (the error answer, the form's files,
the seed echo) is :mod:`fastfill.serve.answers`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..files import codecs as fio
from ..errors import InputError, SizeLimitError, printable
from . import check_token
from .answers import ApiError, answer, content_type, error, error_body, image_and_mask, seed_header
from . import DEFAULT_MAX_FILL_PIXELS
from .batcher import Batcher, Busy, fill_area

log = logging.getLogger("fastfill.serve")
access_log = logging.getLogger("fastfill.serve.access")

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_QUEUE = 16
DEFAULT_MAX_CONNECTIONS = 512
# Seconds a client is told to wait after a 503 (about one batch of work).
RETRY_AFTER = 1
# Bounds of the resource flags (as the CLI's): past them a typo exhausts the machine.
MAX_QUEUE, MAX_SERVE_WORKERS = 4096, 256
CONNECTIONS_RANGE, HEADER_TIMEOUT_RANGE, BODY_TIMEOUT_RANGE = (16, 65536), (0.5, 3600.0), (0.5, 86400.0)


@dataclass
class ServeLimits:
    """The server's bounds; each is a flag of ``fastfill serve``."""

    max_pixels: int = fio.DEFAULT_MAX_PIXELS  # per image (and per mask)
    # pixels the fill works over (the hole's windows), per request and per batch: what bounds
    # the fill's own memory (about 210 bytes a pixel for the default fill, 120 for harmonic)
    max_fill_pixels: int = DEFAULT_MAX_FILL_PIXELS
    max_body: int = DEFAULT_MAX_BODY  # bytes per request body
    queue: int = DEFAULT_QUEUE  # requests waiting for the model; past it 503
    # threads decoding and encoding requests (as `fastfill serve --io-threads`: up to 4, one a core)
    io_threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    quality: int = 95  # JPEG / lossy WebP quality of the answers
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # open connections; past it 503 and closed
    header_timeout: float = 10.0  # seconds to receive a request's headers; then 408 and closed
    body_timeout: float = 60.0  # seconds to receive a request's body; then 408 and closed

    @property
    def max_requests(self) -> int:
        """Requests in flight (each may hold its body in memory); past it 503."""
        return max(64, 4 * (self.queue + self.io_threads))

    def check(self) -> None:
        """:class:`InputError` for a connection bound or timeout outside the CLI's ranges."""
        for name, (lo, hi) in (("max_connections", CONNECTIONS_RANGE), ("header_timeout", HEADER_TIMEOUT_RANGE),
                               ("body_timeout", BODY_TIMEOUT_RANGE)):
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise InputError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")


class InpaintRequest(BaseModel):
    """IOPaint's request shape: the fields fastfill uses; the others are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    image: str = Field(description="The image: base64, or a data: URL (PNG, JPEG, WebP, TIFF, BMP, GIF, "
                                   "PPM, TGA).")
    mask: str = Field(description="The mask, same size, base64 or data: URL. IOPaint's rule: the grey "
                                  "of its colour > 127 = fill, alpha ignored (strokes of a light colour, "
                                  "white as IOPaint's web app paints them, on a transparent canvas fill "
                                  "where painted, anti-aliased rim included; a dark or saturated colour, "
                                  "pure red's grey being 76, fills nothing).")
    resize_mask: bool = Field(False, description="Scale a mask of another size to the image "
                                                 "(else a size mismatch is 400).")


def _printable(text: str) -> str:
    """``text`` for a log line: :func:`fastfill.errors.printable` (line breaks, terminal escapes,
    other control and format characters escaped) after escaping the quote and the backslash,
    which delimit the line's fields."""
    return printable(text.replace("\\", "\\\\").replace('"', '\\"'))


def _raw_answer(status: int, message: str, headers: dict | None = None) -> bytes:
    """A whole JSON error answer that closes the connection, for the protocol layer (no app)."""
    from http import HTTPStatus

    body = json.dumps(error_body(status, message), separators=(",", ":")).encode()
    head = {"content-type": "application/json", "content-length": str(len(body)),
            "connection": "close", **(headers or {})}
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"] + [f"{k}: {v}" for k, v in head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _b64(field: str, value: str) -> bytes:
    """base64 or a data: URL -> bytes (whitespace allowed, anything else is a 400)."""
    s = value.strip()
    if s.startswith("data:"):
        head, sep, s = s.partition(",")
        if not sep or ";base64" not in head:
            raise ApiError(400, f"{field}: a data: URL must be base64 (data:image/png;base64,...)")
    s = "".join(s.split())
    try:
        data = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{field}: not valid base64") from None
    if not data:
        raise ApiError(400, f"{field}: empty")
    return data


class _Limits:
    """Pure ASGI middleware: the bound on requests in flight (503), the body limit (413 from
    Content-Length before anything is read, or as soon as a streamed body passes it), the body
    deadline (408), the bearer token, and one access line per request."""

    def __init__(self, app, *, max_body: int, token: bytes | None, body_timeout: float | None = None,
                 max_requests: int | None = None):
        self.app, self.max_body, self.token = app, max_body, token
        self.body_timeout, self.max_requests = body_timeout, max_requests
        self.active = 0  # requests in flight (one event loop: no lock)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        state = {"status": 0, "bytes": 0}
        method = scope["method"]
        if method == "HEAD":  # every GET route answers HEAD (uvicorn sends the head alone)
            scope = {**scope, "method": "GET"}
        self.active += 1

        async def counting_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body" and method != "HEAD":  # (not sent)
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            problem = self._refuse(scope)
            if problem is not None:
                await _drain(scope, receive)
                await problem(scope, receive, counting_send)
                return
            received = 0
            body_done = False
            deadline = None if self.body_timeout is None else time.monotonic() + self.body_timeout

            async def limited_receive():
                nonlocal received, body_done
                if body_done or deadline is None:  # later calls only wait for a disconnect
                    message = await receive()
                else:
                    with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as waited:
                        message = await receive()
                    if waited.cancelled_caught:
                        raise HTTPException(408, f"request body not received in {self.body_timeout:g} s "
                                                 "(--body-timeout)", {"Connection": "close"})
                if message["type"] == "http.request":
                    body_done = not message.get("more_body", False)
                    received += len(message.get("body", b""))
                    if received > self.max_body:  # (the rest is read and dropped, not cut:
                        # a client still sending would get a reset instead of this answer)
                        raise HTTPException(413, self._too_big())
                return message

            await self.app(scope, limited_receive, counting_send)
        finally:
            self.active -= 1
            client = scope.get("client")
            # the path as sent (percent-encoded), escaped: a decoded %0a would forge a log line
            raw = scope.get("raw_path")
            path = raw.decode("latin-1") if raw else scope["path"]
            access_log.info('%s "%s %s" %d %d B %.1f ms', _printable(client[0]) if client else "-",
                            _printable(method), _printable(path), state["status"], state["bytes"],
                            (time.perf_counter() - t0) * 1e3)

    def _too_big(self) -> str:
        return f"request body over the limit of {self.max_body} bytes (--max-body)"

    def _refuse(self, scope):
        if self.max_requests is not None and self.active > self.max_requests and scope["path"] != "/healthz":
            return error(503, f"server busy: {self.max_requests} requests in flight, retry later",
                         {"Retry-After": str(RETRY_AFTER), "Connection": "close"})
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return error(400, "bad Content-Length")
            if n > self.max_body:
                return error(413, self._too_big(), {"Connection": "close"})
        if self.token is not None and needs_token(scope["path"]):
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                return error(401, "missing or wrong token (Authorization: Bearer TOKEN)",
                             {"WWW-Authenticate": "Bearer"})
        return None


# A body sent with a refused request (over --max-body, the server busy, no token) read and
# dropped before the answer, up to this much and this long: a connection closed with unread
# bytes is reset, and the client gets the reset instead of the answer (the 413's or 503's JSON).
DRAIN_BYTES = 64 << 20
DRAIN_SECONDS = 5.0


async def _drain(scope, receive) -> None:
    """Read and drop a request's body (at most DRAIN_BYTES, DRAIN_SECONDS), if it has one."""
    headers = dict(scope.get("headers") or [])
    if headers.get(b"content-length", b"0").strip() in (b"", b"0") and \
            b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
        return
    got = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while got <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            got += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


class Server:
    """What the routes share: the Inpainter, the batcher, the decode/encode thread limit."""

    def __init__(self, inpainter, limits: ServeLimits, max_batch: int, model_name: str | None = None):
        self.inpainter = inpainter
        self.model_name = model_name
        self.limits = limits
        self.batcher = Batcher(inpainter, max_queue=limits.queue, max_batch=max_batch,
                               max_area=limits.max_fill_pixels)
        self.limiter = anyio.CapacityLimiter(limits.io_threads)
        # requests holding a decoded image (from its decode to its answer's encode): what the
        # memory bound counts. Without it, fills done waited behind every pending decode for a
        # thread, each holding its image and result, as many as requests in flight (64 where
        # queue + batch + io-threads said 22)
        self.holding = anyio.CapacityLimiter(limits.queue + max_batch + limits.io_threads)

    def config(self) -> dict:
        eng = self.inpainter.engine
        meta = self.inpainter.meta
        from ..engines.classical import ClassicalEngine

        fill = eng if isinstance(eng, ClassicalEngine) else None
        stands_in = fill.replaces if fill else None  # the default fill in place of a net's prefill
        return {
            "version": __version__,
            "model": {"kind": meta.kind, "fill": stands_in or meta.fill, "channels": meta.channels,
                      "input_size": list(meta.input_size) if meta.input_size else None,
                      "name": self.model_name,
                      # what fills the holes: the net, or the fill named when no net runs
                      "runs": f"the default fill, {fill.label}" if stands_in else
                              (f"fill {fill.label}" if fill else "the net")},
            "backend": eng.name,
            "backend_selection": eng.selection,
            "device": eng.device,
            "running_on": eng.runs_on,
            "roi": self.inpainter.roi,
            "limits": asdict(self.limits) | {"max_batch": self.batcher.max_batch,
                                              "max_requests": self.limits.max_requests},
            "stats": self.batcher.stats(),
        }

    # -- the work of one request, off the event loop -------------------------------------------
    def decode(self, image_bytes: bytes, mask_bytes: bytes, resize_mask: bool, mask_rule: str = "fastfill",
               form: bool = True):
        """``mask_rule``: ``"fastfill"`` (grey laid on black where transparent, >= 128) or
        ``"iopaint"`` (IOPaint's: the colour's grey, alpha ignored, > 127; see
        ``codecs.decode_mask(alpha="ignore")``). ``form``: a multipart request (else JSON), for
        how a message says to set ``resize_mask``."""
        opts = fio.FileOptions(resize_mask=resize_mask, max_pixels=self.limits.max_pixels,
                               mask_alpha="ignore" if mask_rule == "iopaint" else "black")
        try:
            src, mask = fio.read_item(image_bytes, mask_bytes, opts)
        except InputError as e:
            hint = "send the form field resize_mask=true" if form else 'send "resize_mask": true'
            msg = str(e).replace(f"({fio.RESIZE_HINT})", f"({hint} to scale it)")
            if not msg.startswith(("the mask", "mask ")):  # (a mask's message names it already)
                msg = f"{e.part}: {msg}"
            raise ApiError(413 if isinstance(e, SizeLimitError) else 400, msg) from None
        try:
            pair = self.inpainter.check(src.rgb, mask)
        except InputError as e:
            raise ApiError(400, str(e)) from None
        area, limit = fill_area(pair), self.limits.max_fill_pixels
        if area > limit:
            raise ApiError(413, f"mask: the fill would work over {fio.megapixels(area, limit)} megapixels (the "
                                f"hole's windows), over the limit of {limit / 1e6:g} "
                                "(--max-fill-pixels): send a tighter mask, or fill it in parts")
        return src, pair

    def encode(self, result: np.ndarray, src: fio.Decoded, mask: np.ndarray) -> tuple[bytes, str, str]:
        """(bytes, Content-Type, file suffix) of the answer, in the input's format."""
        fmt = fio.output_format(src.format)
        data = fio.encode_result(result, src, mask, fmt, fio.FileOptions(quality=self.limits.quality))
        Image.init()
        return data, Image.MIME.get(fmt, "application/octet-stream"), fio.FORMAT_SUFFIX[fmt]

    async def inpaint(self, parts: list, resize_mask: bool, *, mask_rule: str = "fastfill",
                      headers: dict | None = None, form: bool = True, request: Request | None = None) -> Response:
        """Decode (``io_threads`` threads), fill (the batcher), encode in the input's format: the work
        of every inpaint route, whichever client's request shape it reads. ``parts``: the list
        ``[image bytes, mask bytes]``, emptied here so that nothing holds them once decoded (a
        caller keeping them in its own names would, for as long as the request waits).
        ``headers``: more headers for the answer; ``form``: a multipart request (else JSON).
        ``request``: asked whether its client is still there before the fill is queued and before
        the answer is encoded (a page user who gave up and sent again queued dead work)."""
        if self.batcher.full():  # before decoding: a busy server does not spend work on refusals
            raise ApiError(503, "server busy: the queue is full, retry later",
                           {"Retry-After": str(RETRY_AFTER)})
        async def still_there():
            if request is not None and await request.is_disconnected():
                raise ClientDisconnect()

        image_bytes, mask_bytes = parts
        parts.clear()
        # (asked now as well: the question lets the server read the connection again, so that a
        # client gone is known by the time the decode is done)
        await still_there()
        async with self.holding:  # (waiting here holds the body alone)
            await still_there()  # (gone while it waited: not decoded)
            src, pair = await anyio.to_thread.run_sync(
                partial(self.decode, image_bytes, mask_bytes, resize_mask, mask_rule, form),
                limiter=self.limiter)
            del image_bytes, mask_bytes
            await still_there()
            try:
                fut = self.batcher.submit(pair)
            except Busy as e:
                raise ApiError(503, f"server busy: {e}, retry later",
                               {"Retry-After": str(RETRY_AFTER)}) from None
            result = await asyncio.wrap_future(fut)
            await still_there()
            data, media, ext = await anyio.to_thread.run_sync(
                partial(self.encode, result, src, pair.hole), limiter=self.limiter)
            del src, pair, result
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'inline; filename="result{ext}"', **(headers or {})})


    # -- the two routes' requests ------------------------------------------------------------
    async def inpaint_json(self, request: Request) -> Response:
        """IOPaint's JSON request: base64 (or data: URL) image and mask, IOPaint's mask rule; its
        ``sd_seed`` comes back in ``X-Seed`` as from IOPaint (the fill uses no seed)."""
        if content_type(request) != "application/json":
            raise ApiError(415, "send application/json (or multipart/form-data to /api/v1/inpaint/file)")
        body = bytearray()  # (read here, not by request.body(), which would keep it for the request)
        async for chunk in request.stream():
            body += chunk
        try:
            req = InpaintRequest.model_validate_json(body)
        except ValidationError as e:
            what = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'body'}: {x['msg']}" for x in e.errors())
            raise ApiError(400, f"bad request: {what}") from None
        del body
        parts = [_b64("image", req.image), _b64("mask", req.mask)]
        seed, resize = seed_header((req.model_extra or {}).get("sd_seed")), req.resize_mask
        del req  # (its base64 text: as large as the body)
        return await self.inpaint(parts, resize, mask_rule="iopaint", headers=seed, form=False,
                                  request=request)

    async def inpaint_file(self, request: Request) -> Response:
        """Multipart: the files ``image`` and ``mask`` (and ``resize_mask``)."""
        if content_type(request) != "multipart/form-data":
            raise ApiError(415, "send multipart/form-data with the files image and mask")
        async with request.form(max_files=2, max_fields=8, max_part_size=1024) as form:
            *parts, resize = await image_and_mask(form)
        return await self.inpaint(parts, resize, request=request)


# Paths anyone may fetch when a token is set: the page, its files, the docs, the health check.
# Everything else (the API, IOPaint's and lama-cleaner's routes, any path added later) needs it.
PUBLIC_PATHS = frozenset({"/", "/favicon.ico", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                          "/redoc"})
PUBLIC_PREFIXES = ("/static/", "/static-offline-docs/")


def needs_token(path: str) -> bool:
    """Whether a request for ``path`` needs the bearer token (when one is set)."""
    return path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES)


_JSON_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": InpaintRequest.model_json_schema()}}}}
_FILE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image", "mask"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "The image file."},
        "mask": {"type": "string", "format": "binary",
                 "description": "The mask file, same size: white (>= 128) = fill (transparent = "
                                "black)."},
        "resize_mask": {"type": "boolean", "description": "Scale a mask of another size."}}}}}}}
_IMAGE_ANSWER = {200: {"description": "The filled image, in the input's format (alpha kept).",
                       "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
                 400: {"description": "Undecodable image, bad base64, mask size mismatch."},
                 413: {"description": "Body or pixels over the limit."},
                 415: {"description": "Wrong Content-Type."},
                 503: {"description": "Queue full; see Retry-After."}}


def create_app(inpainter, limits: ServeLimits | None = None, *, max_batch: int | None = None,
               token: str | None = None, model_name: str | None = None,
               cors_origins: list[str] | tuple[str, ...] = ()) -> FastAPI:
    """The ASGI app serving ``inpainter`` (an :class:`fastfill.Inpainter`) under ``limits``.

    ``max_batch``: the most requests per model call (default: the Inpainter's batch size).
    ``token``: when set, every route but the page, its files, the docs and ``/healthz`` needs
    ``Authorization: Bearer <token>`` (printable ASCII, else :class:`InputError`).
    ``model_name``: what ``/api/v1/server-config`` and the IOPaint / lama-cleaner routes call the
    model.
    ``cors_origins``: web origins (``https://host[:port]``, or ``*``) whose pages may call the API
    from a browser; none by default (:func:`fastfill.serve.check_cors_origin`).
    """
    from fastapi_offline import FastAPIOffline

    from . import check_cors_origin
    from .compat import add_iopaint_routes, add_lama_cleaner_routes, iopaint_server_config

    token_bytes = check_token(token)
    origins = list(dict.fromkeys(check_cors_origin(o) for o in cors_origins))
    limits = limits or ServeLimits()
    limits.check()
    server = Server(inpainter, limits, max_batch or inpainter.batch_size, model_name)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        yield
        await anyio.to_thread.run_sync(server.batcher.close)

    app = FastAPIOffline(title="fastfill", version=__version__, lifespan=lifespan,
                         description="Fill the masked regions of images (object removal). "
                                     "IOPaint-compatible `/api/v1/inpaint`.")
    app.state.server = server
    _add_middleware(app, limits, token_bytes, origins)
    _add_page_routes(app)

    @app.get("/api/v1/server-config", summary="The model, back-end, device, limits and counters "
                                              "(and IOPaint's keys, for its web app).")
    async def server_config():
        return server.config() | iopaint_server_config(server)

    @app.post("/api/v1/inpaint", summary="Fill the mask (IOPaint's JSON request).",
              openapi_extra=_JSON_BODY, responses=_IMAGE_ANSWER, response_class=Response)
    async def inpaint(request: Request):
        return await answer(server.inpaint_json(request))

    @app.post("/api/v1/inpaint/file", summary="Fill the mask (multipart image + mask files).",
              openapi_extra=_FILE_BODY, responses=_IMAGE_ANSWER, response_class=Response)
    async def inpaint_file(request: Request):
        return await answer(server.inpaint_file(request))

    add_iopaint_routes(app, server)
    add_lama_cleaner_routes(app, server)
    return app


def _add_middleware(app: FastAPI, limits: ServeLimits, token: bytes | None, origins: list[str]) -> None:
    """The limits and the token check (one middleware), CORS when origins are given, and the
    JSON error bodies."""
    app.add_middleware(_Limits, max_body=limits.max_body, token=token,
                       body_timeout=limits.body_timeout, max_requests=limits.max_requests)
    if origins:  # outermost: preflights are answered before the token check, errors carry the headers
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], allow_credentials=False,
                           expose_headers=["X-Seed", "Content-Disposition", "Retry-After"], max_age=600)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return error(400, "bad request: " + "; ".join(str(e.get("msg")) for e in exc.errors()))


def _add_page_routes(app: FastAPI) -> None:
    """The page, its files, the icon and the liveness check (none needs the token)."""
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)  # asked for by browsers whatever the page says
    async def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/healthz", summary="Liveness: 200 while the server runs.")
    async def healthz():
        return {"status": "ok"}


def protocol_class(limits: ServeLimits):
    """uvicorn's h11 protocol plus what it lacks against slow clients (uvicorn has no timeout on
    headers nor bodies): a deadline for a request's headers (408 if some came, then closed), one
    for its body (the app answers 408; a body nobody reads is cut), and a bound on open
    connections (503 and closed), so that half-open connections never hold up real requests."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _refused = False
        _timer = None
        _waiting = None  # "headers" or "body": what the timer is for

        def connection_made(self, transport):
            if len(self.connections) >= limits.max_connections:
                self._refused = True
                message = f"server busy: {limits.max_connections} open connections (--max-connections)"
                self._log(transport, 503, message)
                transport.write(_raw_answer(503, message + ", retry later", {"retry-after": str(RETRY_AFTER)}))
                transport.close()
                return
            super().connection_made(transport)
            self._watch()

        def connection_lost(self, exc):
            if self._refused:
                return
            self._stop_timer()
            super().connection_lost(exc)

        def data_received(self, data):
            if self._refused:
                return
            super().data_received(data)
            self._watch()

        def on_response_complete(self):
            super().on_response_complete()
            self._watch()

        def send_400_response(self, msg):
            # malformed HTTP (a bad Content-Length, no Host, a bad chunk, headers too large): the
            # JSON error every answer has, and an access line (uvicorn's is plain text, unlogged)
            message = f"bad HTTP request: {msg}"
            self._log(self.transport, 400, message)
            self.transport.write(_raw_answer(400, message))
            self.transport.close()

        def _stop_timer(self):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._waiting = None

        def _watch(self):
            """Arm the deadline of what the connection now waits for."""
            if self.transport.is_closing():
                return self._stop_timer()
            waiting = _waiting_for(self, h11)
            if waiting != self._waiting:  # a deadline, not an idle timeout: dribbling does not reset it
                self._stop_timer()
                if waiting:
                    delay = limits.header_timeout if waiting == "headers" else limits.body_timeout
                    self._waiting, self._timer = waiting, self.loop.call_later(delay, self._expired)

        def _expired(self):
            _deadline_passed(self, limits)

        _log = staticmethod(_log_refusal)

    return Protocol


def _waiting_for(proto, h11) -> str | None:
    """What a connection waits for: ``"headers"`` (a new connection, or the first bytes of the
    next request), ``"body"``, or None (an idle keep-alive connection has uvicorn's own timer, a
    request being answered none)."""
    state = proto.conn.their_state
    if state is h11.IDLE and (proto.cycle is None or proto.conn.trailing_data[0]):
        return "headers"
    return "body" if state is h11.SEND_BODY else None


def _deadline_passed(proto, limits: ServeLimits) -> None:
    """A connection's deadline passed: 408 and closed (a body the app is reading: looked at again
    later, the app answers 408 at its own deadline)."""
    waiting, proto._timer, proto._waiting = proto._waiting, None, None
    if proto.transport.is_closing():
        return
    if waiting == "body" and proto.cycle is not None and not proto.cycle.response_complete:
        proto._waiting, proto._timer = waiting, proto.loop.call_later(1.0, proto._expired)
        return
    if waiting == "headers" and proto.conn.trailing_data[0]:
        message = f"request headers not received in {limits.header_timeout:g} s (--header-timeout)"
        _log_refusal(proto.transport, 408, message)
        proto.transport.write(_raw_answer(408, message))
    proto.transport.close()


def _log_refusal(transport, status: int, message: str) -> None:
    peer = transport.get_extra_info("peername")
    host = peer[0] if isinstance(peer, tuple) else peer
    access_log.info('%s "-" %d: %s', _printable(str(host)) if host else "-", status, message)


def configure_logging(debug: bool = False) -> None:
    """One line per request and per problem on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("fastfill.serve")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


__all__ = ["create_app", "ServeLimits", "InpaintRequest", "configure_logging", "protocol_class", "needs_token"]
