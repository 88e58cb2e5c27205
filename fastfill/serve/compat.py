"""The routes IOPaint's and lama-cleaner's own web apps and scripts call, on ``fastfill serve``.

- IOPaint 1.6.0 (``iopaint/api.py``): ``/api/v1/inpaint`` (in :mod:`fastfill.serve.app`), IOPaint's
  keys in ``/api/v1/server-config``, ``GET/POST /api/v1/model``, ``POST /api/v1/gen-info``,
  ``GET /api/v1/inputimage``, ``GET /api/v1/samplers``.
- lama-cleaner 1.2.5 (``lama_cleaner/server.py``): ``POST /inpaint`` (multipart), ``GET
  /server_config``, ``GET/POST /model``, ``GET /model_downloaded/{name}``, ``GET /is_desktop``,
  ``GET /inputimage``.

One model is served: it is described as an IOPaint "inpaint" model (no prompt, no plugins,
no ControlNet); asking to switch to another is a 400 that says so. Every fill goes through
:meth:`fastfill.serve.app.Server.inpaint` (the same limits, batching and encoding as fastfill's
own routes), with the mask rule those tools use (``decode_mask(alpha="ignore")``: the grey of
the colour, alpha dropped, > 127, as iopaint/api.py ``api_inpaint`` and lama_cleaner/server.py
``process`` threshold Pillow's ``convert("L")``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .answers import ApiError, answer, content_type, image_and_mask, seed_header

# What lama-cleaner's web app must be told the model is: it looks its per-model settings up by
# this name (``hdSettings[model]``) and asks to switch to its own choice (default "lama") when the
# server names another. fastfill's model is, like LaMa, a mask-only eraser.
LAMA_CLEANER_MODEL = "lama"
# IOPaint's defaults for the plugin models it names in server-config (its schema needs values
# from its lists even with no plugin loaded); no plugin runs here, so the lists are empty.
_IOPAINT_PLUGIN_DEFAULTS = {"removeBGModel": "briaai/RMBG-1.4", "realesrganModel": "realesr-general-x4v3",
                            "interactiveSegModel": "vit_b"}


def model_info(server) -> dict:
    """The served model as IOPaint's ``ModelInfo`` (iopaint/schema.py) of a mask-only model:
    ``model_type`` "inpaint", every computed flag what IOPaint computes for that type."""
    name = server.model_name or "fastfill"
    return {"name": name, "path": name, "model_type": "inpaint", "is_single_file_diffusers": False,
            "need_prompt": False, "controlnets": [], "brushnets": [], "support_strength": False,
            "support_outpainting": False, "support_lcm_lora": False, "support_controlnet": False,
            "support_brushnet": False, "support_powerpaint_v2": False}


def iopaint_server_config(server) -> dict:
    """IOPaint's ``ServerConfigResponse`` keys (iopaint/schema.py): its web app reads them at
    start (a missing one breaks it or hides Settings)."""
    return {"plugins": [], "modelInfos": [model_info(server)],
            "removeBGModel": _IOPAINT_PLUGIN_DEFAULTS["removeBGModel"], "removeBGModels": [],
            "realesrganModel": _IOPAINT_PLUGIN_DEFAULTS["realesrganModel"], "realesrganModels": [],
            "interactiveSegModel": _IOPAINT_PLUGIN_DEFAULTS["interactiveSegModel"], "interactiveSegModels": [],
            "enableFileManager": False, "enableAutoSaving": False, "enableControlnet": False,
            "controlnetMethod": None, "disableModelSwitch": False, "isDesktop": False, "samplers": []}


def lama_cleaner_server_config() -> dict:
    """lama-cleaner's ``/server_config`` (lama_cleaner/server.py get_server_config), model switch
    off (its app then greys its model list out)."""
    return {"isControlNet": False, "controlNetMethod": "control_v11p_sd15_canny",
            "isDisableModelSwitchState": True, "isDisableModelSwitch": True, "isEnableAutoSaving": False,
            "enableFileManager": False, "plugins": []}


_TEXT = "text/plain; charset=utf-8"


def _switch_refused(server, name: str) -> ApiError:
    served = server.model_name or "fastfill"
    return ApiError(400, f"cannot switch to model {name!r}: this fastfill server serves one model "
                         f"({served}); start another `fastfill serve` with that model to use it")


def add_iopaint_routes(app: FastAPI, server) -> None:
    """IOPaint's routes beside ``/api/v1/inpaint`` and ``/api/v1/server-config``."""
    tags = ["IOPaint"]

    @app.get("/api/v1/model", tags=tags, summary="The served model, as IOPaint's ModelInfo.")
    async def current_model():
        return model_info(server)

    async def switch(request: Request):
        if content_type(request) != "application/json":
            raise ApiError(415, 'send application/json: {"name": "MODEL"}')
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # (RecursionError: JSON nested past Python's stack)
            raise ApiError(400, "bad request: the body is not JSON") from None
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise ApiError(400, 'bad request: send {"name": "MODEL"}')
        if name != model_info(server)["name"]:
            raise _switch_refused(server, name)
        return JSONResponse(model_info(server))

    @app.post("/api/v1/model", tags=tags, summary="Switch model: only to the served one (else 400).",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}}}})
    async def switch_model(request: Request):
        return await answer(switch(request))

    async def gen_info(request: Request):
        if content_type(request) != "multipart/form-data":
            raise ApiError(415, "send multipart/form-data with the file field 'file'")
        async with request.form(max_files=1, max_fields=4, max_part_size=1024) as form:
            f = form.get("file")
            if f is None or isinstance(f, str):
                raise ApiError(400, "missing the file field 'file'")
        return JSONResponse({"prompt": "", "negative_prompt": ""})

    @app.post("/api/v1/gen-info", tags=tags, summary="The prompts stored in an image: none (no prompts here).",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["file"],
                  "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
    async def gen_info_route(request: Request):
        return await answer(gen_info(request))

    @app.get("/api/v1/inputimage", tags=tags, status_code=204, response_class=Response,
             summary="The image given at start: none (204).")
    async def input_image():
        return Response(status_code=204)

    @app.get("/api/v1/samplers", tags=tags, summary="Diffusion samplers: none.")
    async def samplers():
        return []


def add_lama_cleaner_routes(app: FastAPI, server) -> None:
    """lama-cleaner 1.2.5's routes (at the root, as its web app and scripts call them)."""
    tags = ["lama-cleaner"]

    async def inpaint(request: Request) -> Response:
        if content_type(request) != "multipart/form-data":
            raise ApiError(415, "send multipart/form-data with the files image and mask")
        # its web app sends ~37 parts (the files and every setting): room for them, no more
        async with request.form(max_files=3, max_fields=64, max_part_size=64 * 1024) as form:
            *parts, resize = await image_and_mask(form)
            seed = seed_header(form.get("sdSeed"))
        return await server.inpaint(parts, resize, mask_rule="iopaint", headers=seed, request=request)

    @app.post("/inpaint", tags=tags, summary="Fill the mask (lama-cleaner's multipart request).",
              response_class=Response, openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {"type": "object", "required": ["image", "mask"], "properties": {
                      "image": {"type": "string", "format": "binary"},
                      "mask": {"type": "string", "format": "binary",
                               "description": "Same size; grey of its colour > 127 = fill (alpha ignored)."},
                  }}}}}},
              responses={200: {"description": "The filled image, in the input's format.",
                               "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}})
    async def inpaint_route(request: Request):
        return await answer(inpaint(request))

    @app.get("/server_config", tags=tags, summary="lama-cleaner's server settings.")
    async def server_config():
        return lama_cleaner_server_config()

    @app.get("/model", tags=tags, response_class=PlainTextResponse,
             summary=f"The model's name for lama-cleaner's app: {LAMA_CLEANER_MODEL!r} (a mask-only eraser).")
    async def current_model():
        return PlainTextResponse(LAMA_CLEANER_MODEL, media_type=_TEXT)

    async def switch(request: Request):
        if content_type(request) not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise ApiError(415, "send a form with the field 'name'")
        async with request.form(max_files=0, max_fields=4, max_part_size=1024) as form:
            name = form.get("name")
        if not isinstance(name, str):
            raise ApiError(400, "missing the form field 'name'")
        if name not in (LAMA_CLEANER_MODEL, model_info(server)["name"]):
            raise _switch_refused(server, name)
        return PlainTextResponse("Same model", media_type=_TEXT)

    @app.post("/model", tags=tags, response_class=PlainTextResponse,
              summary="Switch model: only to the served one (else 400).")
    async def switch_model(request: Request):
        return await answer(switch(request))

    @app.get("/model_downloaded/{name:path}", tags=tags, response_class=PlainTextResponse,
             summary="'True' for the served model, else 'False'.")
    async def model_downloaded(name: str):
        here = name in (LAMA_CLEANER_MODEL, model_info(server)["name"])
        return PlainTextResponse(str(here), media_type=_TEXT)

    @app.get("/is_desktop", tags=tags, response_class=PlainTextResponse, summary="'False'.")
    async def is_desktop():
        return PlainTextResponse("False", media_type=_TEXT)

    @app.get("/inputimage", tags=tags, response_class=PlainTextResponse,
             summary="The image given at start: none ('No Input Image', as lama-cleaner).")
    async def input_image():
        return PlainTextResponse("No Input Image", media_type=_TEXT)


__all__ = ["add_iopaint_routes", "add_lama_cleaner_routes", "iopaint_server_config",
           "lama_cleaner_server_config", "model_info", "LAMA_CLEANER_MODEL"]
