"""What the server's routes and the compatible routes (:mod:`fastfill.serve.compat`) share: the
error every route answers with, turning a request's failure into a JSON answer, reading a
multipart form's image and mask, echoing a client's seed."""

from __future__ import annotations

import logging
import os
import traceback

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..errors import EngineError, FastfillError, InputError

log = logging.getLogger("fastfill.serve")

# the access line's status of a request whose client went away before its answer (nginx's)
CLIENT_GONE = 499


class ApiError(Exception):
    """An answer other than the image: its status, message and headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_body(status: int, message: str) -> dict:
    """The JSON of every error answer: ``error`` and ``status`` (fastfill's), ``detail`` (FastAPI's
    and IOPaint's) and ``errors`` (what IOPaint's web app shows in its error toast)."""
    return {"error": message, "status": status, "detail": message, "errors": message}


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def answer(work) -> Response:
    """Run one request's work; every failure becomes a JSON error (never a traceback)."""
    try:
        return await work
    except ApiError as e:
        return error(e.status, e.message, e.headers)
    except HTTPException:
        raise  # 408 / 413 from the body limit: the app's HTTPException handler answers it
    except ClientDisconnect:  # the client went away mid-request: nobody to answer, not a bug
        return Response(status_code=CLIENT_GONE)
    except InputError as e:
        return error(400, str(e))
    except (EngineError, FastfillError) as e:
        log.error("engine error: %s", e)
        return error(500, f"engine error: {e}")
    except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback only with FASTFILL_DEBUG
        if os.environ.get("FASTFILL_DEBUG"):
            log.error("internal error\n%s", traceback.format_exc())
        else:
            log.error("internal error: %s: %s (FASTFILL_DEBUG=1 for the traceback)", type(e).__name__, e)
        return error(500, "internal error (see the server log)")


def seed_header(value) -> dict:
    """``{"X-Seed": ...}`` echoing a client's integer seed (IOPaint and lama-cleaner answer the
    seed they used; their web apps keep it), else nothing."""
    try:
        return {"X-Seed": str(int("" if value is None else str(value).strip()))}
    except ValueError:  # none, empty, not an integer
        return {}


async def image_and_mask(form) -> tuple[bytes, bytes, bool]:
    """A multipart form's files ``image`` and ``mask`` and its ``resize_mask`` flag."""
    parts = {}
    for name in ("image", "mask"):
        f = form.get(name)
        if f is None or isinstance(f, str):
            raise ApiError(400, f"missing the file field {name!r}")
        parts[name] = await f.read()
    flag = str(form.get("resize_mask", "")).strip().lower()
    if flag not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ApiError(400, f"resize_mask: expected true or false, got {flag[:40]!r}")
    return parts["image"], parts["mask"], flag in ("1", "true", "yes", "on")
