"""`fastfill serve` for IOPaint's and lama-cleaner's clients: every route they call, over HTTP,
against the real server in its own process on a loopback port.

- IOPaint 1.6.0: its server-config keys, `/api/v1/model` (switching away is a 400 that says why),
  `/api/v1/gen-info`, `/api/v1/inputimage`, `/api/v1/samplers`, its mask rule on
  `/api/v1/inpaint` (strokes on a transparent canvas fill where painted, faint rim included),
  `X-Seed`, error bodies with `errors` and `detail`.
- lama-cleaner 1.2.5: `POST /inpaint` as its web app sends it (37 parts), `/server_config`,
  `/model`, `/model_downloaded/...`, `/is_desktop`, `/inputimage`.
- `--token` covers those routes; CORS is off unless `--cors-origin` allows an origin.

The web apps themselves, in a browser: tests/test_serve_webapps.py.
"""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from conftest import invoke, serve_process

httpx = pytest.importorskip("httpx", reason="httpx (the 'dev' extra) is not installed")

# IOPaint 1.6.0's ServerConfigResponse (iopaint/schema.py): its keys and the JSON types its web app
# reads. A missing one breaks the app or hides its Settings (checked in a browser in
# test_serve_webapps.py, against the schema itself).
IOPAINT_CONFIG_TYPES = {"plugins": list, "modelInfos": list, "removeBGModel": str, "removeBGModels": list,
                        "realesrganModel": str, "realesrganModels": list, "interactiveSegModel": str,
                        "interactiveSegModels": list, "enableFileManager": bool, "enableAutoSaving": bool,
                        "enableControlnet": bool, "controlnetMethod": (str, type(None)),
                        "disableModelSwitch": bool, "isDesktop": bool, "samplers": list}
# IOPaint's ModelInfo of a model of type "inpaint" (LaMa, MAT, ...), its computed fields included.
MODEL_INFO = {"name": "default.onnx", "path": "default.onnx", "model_type": "inpaint",
              "is_single_file_diffusers": False, "need_prompt": False, "controlnets": [], "brushnets": [],
              "support_strength": False, "support_outpainting": False, "support_lcm_lora": False,
              "support_controlnet": False, "support_brushnet": False, "support_powerpaint_v2": False}
# The form fields lama-cleaner 1.2.5's web app sends beside its image and mask (recorded from it).
LAMA_FIELDS = {"ldmSteps": "25", "ldmSampler": "plms", "zitsWireframe": "true", "hdStrategy": "Crop",
               "hdStrategyCropMargin": "196", "hdStrategyCropTrigerSize": "800", "hdStrategyResizeLimit": "2048",
               "prompt": "", "negativePrompt": "", "croperX": "-96", "croperY": "-136", "croperHeight": "512",
               "croperWidth": "512", "useCroper": "false", "sdMaskBlur": "5", "sdStrength": "0.75",
               "sdSteps": "50", "sdGuidanceScale": "7.5", "sdSampler": "uni_pc", "sdSeed": "-1",
               "sdMatchHistograms": "false", "sdScale": "1", "cv2Radius": "5", "cv2Flag": "INPAINT_NS",
               "paintByExampleSteps": "50", "paintByExampleGuidanceScale": "7.5", "paintByExampleSeed": "-1",
               "paintByExampleMaskBlur": "5", "paintByExampleMatchHistograms": "false", "p2pSteps": "50",
               "p2pImageGuidanceScale": "1.5", "p2pGuidanceScale": "7.5",
               "controlnet_conditioning_scale": "0.4", "controlnet_method": "control_v11p_sd15_canny"}


def scene(h=120, w=160, seed=0):
    """A smooth, grainy picture (a fill never reproduces its grain) with a red disc to remove."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([40 + 100 * xx / w, 90 + 80 * yy / h, 160 + 0 * xx], -1) + rng.normal(0, 4, (h, w, 3))
    img[(yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= 18 ** 2] = (220, 30, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def stroke_mask(h=120, w=160, rgb=(255, 204, 0), alpha=187, radius=21.0):
    """A mask as the web apps paint it: one round stroke of colour ``rgb`` at ``alpha`` (IOPaint:
    #ffcc00bb; lama-cleaner: white) on a transparent canvas, with an anti-aliased rim whose
    alpha falls off to 0 over 3 px (what a canvas exports: the colour kept, the alpha faint)."""
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.sqrt((yy - h / 2 + 0.5) ** 2 + (xx - w / 2 + 0.5) ** 2)
    a = np.clip((radius - dist) / 3.0, 0, 1) * alpha
    a = np.round(a).astype(np.uint8)
    out = np.zeros((h, w, 4), np.uint8)
    out[a > 0, :3] = rgb
    out[..., 3] = a
    return out


def png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def iopaints_hole(mask_bytes: bytes) -> np.ndarray:
    """IOPaint 1.6.0's own rule, as its code does it: iopaint/helper.py decode_base64_to_image(
    gray=True) = ImageOps.exif_transpose + image.convert("L"); iopaint/api.py api_inpaint:
    cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY) (lama-cleaner 1.2.5: the same, in
    lama_cleaner/helper.py load_img and lama_cleaner/server.py process)."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(Image.open(io.BytesIO(mask_bytes)))
    return np.asarray(im.convert("L")) > 127


def decode(data: bytes):
    im = Image.open(io.BytesIO(data))
    return im.format, np.asarray(im)


def assert_error(r, status, *words):
    """fastfill's error body with IOPaint's fields (its web app's toast shows ``errors``)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == status and body["error"]
    assert body["errors"] == body["detail"] == body["error"]
    assert "Traceback" not in r.text
    for w in words:
        assert w in body["error"], body
    return body["error"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_process(tmp_path_factory.mktemp("clients"), "--max-pixels", 300_000, "--max-body", 2_000_000,
                       "--io-threads", 2) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


# -- IOPaint ---------------------------------------------------------------------------------------
def test_iopaint_server_config_model_and_small_routes(client):
    cfg = client.get("/api/v1/server-config").json()
    assert cfg["model"]["name"] == "default.onnx" and "limits" in cfg  # fastfill's keys stay
    for key, kind in IOPAINT_CONFIG_TYPES.items():
        assert key in cfg, f"IOPaint's server-config key {key} is missing"
        assert isinstance(cfg[key], kind), (key, cfg[key])
    assert cfg["modelInfos"] == [MODEL_INFO] and cfg["plugins"] == [] and cfg["samplers"] == []
    # false would hide Settings; true would make the apps offer a file manager / auto-saving we lack
    assert cfg["disableModelSwitch"] is False and cfg["enableFileManager"] is False
    assert cfg["enableAutoSaving"] is False and cfg["enableControlnet"] is False and cfg["isDesktop"] is False

    assert client.get("/api/v1/model").json() == MODEL_INFO
    r = client.post("/api/v1/model", json={"name": "default.onnx"})
    assert r.status_code == 200 and r.json() == MODEL_INFO
    msg = assert_error(client.post("/api/v1/model", json={"name": "lama"}), 400, "'lama'", "default.onnx")
    assert "one model" in msg
    assert_error(client.post("/api/v1/model", json={"nom": "x"}), 400, "name")
    # JSON nested past Python's stack (RecursionError, not a ValueError): a 400, not a 500
    assert_error(client.post("/api/v1/model", content=b"[" * 100_000 + b"]" * 100_000,
                             headers={"content-type": "application/json"}), 400, "not JSON")
    assert_error(client.post("/api/v1/model", content=b"name=x",
                             headers={"content-type": "application/x-www-form-urlencoded"}), 415)

    r = client.post("/api/v1/gen-info", files={"file": ("photo.png", png(scene()), "image/png")})
    assert r.status_code == 200 and r.json() == {"prompt": "", "negative_prompt": ""}
    assert_error(client.post("/api/v1/gen-info", files={"other": ("a.png", b"x")}), 400, "'file'")
    r = client.get("/api/v1/inputimage")
    assert r.status_code == 204 and r.content == b""
    assert client.get("/api/v1/samplers").json() == []
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/api/v1/model", "/api/v1/gen-info", "/inpaint", "/server_config", "/model"} <= paths


def test_iopaint_mask_rule_fills_the_whole_stroke(client):
    """IOPaint's web app sends yellow strokes at 73 % alpha on a transparent canvas: the hole is
    where IOPaint's rule says (every touched pixel, its faint anti-aliased rim included); outside
    it nothing changes. fastfill's own route keeps its rule (transparent = black), which drops the
    faint rim: the two differ exactly there."""
    image = scene(seed=1)
    stroke = stroke_mask()
    m = png(stroke)
    hole = iopaints_hole(m)
    rim = (stroke[..., 3] > 0) & (stroke[..., 3] < 128)
    assert rim.sum() > 100 and hole[rim].all() and np.array_equal(hole, stroke[..., 3] > 0)

    body = {"image": "data:image/png;base64," + base64.b64encode(png(image)).decode(),
            "mask": "data:image/png;base64," + base64.b64encode(m).decode(),
            "sd_seed": 1234, "hd_strategy": "Crop", "prompt": "", "ldm_steps": 30}
    r = client.post("/api/v1/inpaint", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-seed"] == "1234"
    out = decode(r.content)[1]
    changed = np.any(out != image, axis=-1)
    assert not changed[~hole].any(), "pixels outside IOPaint's hole changed"
    assert changed[hole].mean() > 0.9 and changed[rim].mean() > 0.9, "the stroke (or its rim) was not filled"
    inside = out[hole].astype(int)
    assert (inside[:, 0] - inside[:, 2]).mean() < 0, "the red disc is still there"
    assert "x-seed" not in client.post("/api/v1/inpaint", json={**body, "sd_seed": None}).headers

    # fastfill's route and rule: the faint rim (alpha < 128) is not part of the hole there
    r = client.post("/api/v1/inpaint/file", files={"image": ("i.png", png(image)), "mask": ("m.png", m)})
    own = np.any(decode(r.content)[1] != image, axis=-1)
    faint = (stroke[..., 3] > 0) & (stroke[..., 3] < 100)
    assert not own[faint].any() and own[stroke[..., 3] == 187].mean() > 0.9


def test_iopaint_mask_matches_iopaints_rule_for_every_kind_of_mask():
    """``decode_mask(alpha="ignore")`` against IOPaint's own code path (``convert("L")`` then ``> 127``) for
    the mask kinds clients send: strokes on transparency (alpha ignored: even white under alpha
    0 is hole, as there), opaque grey, RGB, bilevel, palette with a transparent index."""
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    from fastfill.errors import InputError
    from fastfill.files.codecs import decode_mask

    def iopaint_mask(data, size, **kw):
        return decode_mask(data, size, alpha="ignore", **kw)

    rng = np.random.default_rng(0)
    h, w = 40, 50
    grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
    rgba = np.dstack([rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8)])
    white_clear = np.zeros((h, w, 4), np.uint8)
    white_clear[..., :3] = 255  # white everywhere, transparent on the left half
    white_clear[:, w // 2:, 3] = 255
    images = {"stroke": Image.fromarray(stroke_mask(h, w, radius=12)),
              "white-stroke": Image.fromarray(stroke_mask(h, w, rgb=(255, 255, 255), alpha=255, radius=12)),
              "rgba-noise": Image.fromarray(rgba), "white-under-alpha-0": Image.fromarray(white_clear),
              "L": Image.fromarray(grey), "LA": Image.fromarray(np.dstack([grey, grey[::-1]]), "LA"),
              "RGB": Image.fromarray(rgba[..., :3]), "1": Image.fromarray(grey > 100)}
    pal = Image.fromarray(grey).quantize(16)
    pal.info["transparency"] = 3
    images["P+transparency"] = pal
    for name, im in images.items():
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        data = buf.getvalue()
        got = iopaint_mask(data, (h, w))
        np.testing.assert_array_equal(got, iopaints_hole(data), err_msg=name)
    assert iopaint_mask(png(white_clear), (h, w)).all()  # alpha ignored, as IOPaint does
    with pytest.raises(InputError, match="50x40 but the image is 60x40"):
        iopaint_mask(png(grey), (40, 60))
    assert iopaint_mask(png(grey), (80, 100), resize=True).shape == (80, 100)
    with pytest.raises(InputError, match="megapixels"):
        iopaint_mask(png(grey), (h, w), max_pixels=1000)


def test_error_bodies_carry_iopaints_fields(client):
    assert_error(client.post("/api/v1/inpaint", json={"image": "@@@", "mask": "@@@"}), 400, "base64")
    assert_error(client.get("/api/v1/nothing-here"), 404)
    big = png(np.zeros((600, 600), np.uint8))  # 360,000 px: over --max-pixels
    assert_error(client.post("/api/v1/inpaint", json={"image": base64.b64encode(big).decode(),
                                                      "mask": base64.b64encode(big).decode()}), 413, "megapixels")
    assert_error(client.post("/inpaint", content=b"x" * 2_000_001,
                             headers={"content-type": "multipart/form-data; boundary=x"}), 413, "--max-body")


def test_the_protocol_layers_own_answers_carry_the_same_fields():
    """The 408 / 503 written by the connection layer (no app) have the same JSON body."""
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    import json

    from fastfill.serve.app import _raw_answer

    head, _, body = _raw_answer(503, "server busy", {"retry-after": "1"}).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"content-length: %d" % len(body) in head
    assert json.loads(body) == {"error": "server busy", "status": 503, "detail": "server busy",
                                "errors": "server busy"}


# -- lama-cleaner ----------------------------------------------------------------------------------
def test_lama_cleaner_small_routes(client):
    r = client.get("/server_config")
    assert r.status_code == 200 and r.json() == {
        "isControlNet": False, "controlNetMethod": "control_v11p_sd15_canny", "isDisableModelSwitchState": True,
        "isDisableModelSwitch": True, "isEnableAutoSaving": False, "enableFileManager": False, "plugins": []}
    r = client.get("/model")
    assert r.status_code == 200 and r.text == "lama" and r.headers["content-type"].startswith("text/plain")
    for name in ("lama", "default.onnx"):
        r = client.post("/model", data={"name": name})
        assert r.status_code == 200 and r.text == "Same model"
    assert_error(client.post("/model", data={"name": "sd1.5"}), 400, "'sd1.5'", "default.onnx")
    assert_error(client.post("/model", data={"other": "x"}), 400, "'name'")
    assert_error(client.post("/model", json={"name": "lama"}), 415)
    assert client.get("/model_downloaded/lama").text == "True"
    assert client.get("/model_downloaded/default.onnx").text == "True"
    assert client.get("/model_downloaded/runwayml/sd1.5").text == "False"
    assert client.get("/is_desktop").text == "False"
    r = client.get("/inputimage")  # its app takes an answer whose type is not image/* as "none"
    assert r.status_code == 200 and r.text == "No Input Image" and not r.headers["content-type"].startswith("image")


def test_lama_cleaner_inpaint_as_its_web_app_sends_it(client):
    image = scene(seed=2)
    stroke = stroke_mask(rgb=(255, 255, 255), alpha=255)  # lama-cleaner paints white
    m = png(stroke)
    hole = iopaints_hole(m)
    assert (hole & (stroke[..., 3] < 128)).sum() > 100  # the faint rim is in its hole

    fields = {**LAMA_FIELDS, "sdSeed": "77"}
    files = {"image": ("photo.png", png(image), "image/png"), "mask": ("blob", m, "image/png")}
    r = client.post("/inpaint", files=files, data=fields)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-seed"] == "77"
    fmt, out = decode(r.content)
    assert fmt == "PNG" and out.shape == image.shape
    changed = np.any(out != image, axis=-1)
    assert not changed[~hole].any() and changed[hole].mean() > 0.9
    assert (out[hole].astype(int)[:, 0] - out[hole].astype(int)[:, 2]).mean() < 0

    # the answer is in the input's format (its app shows it as a blob of that type)
    r = client.post("/inpaint", files={**files, "image": ("photo.jpg", jpeg(image), "image/jpeg")}, data=fields)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and decode(r.content)[0] == "JPEG"

    assert_error(client.post("/inpaint", files={"image": files["image"]}, data=fields), 400, "'mask'")
    small = png(stroke_mask(60, 80, radius=10))
    assert_error(client.post("/inpaint", files={**files, "mask": ("m.png", small)}, data=fields), 400,
                 "80x60", "160x120")
    assert_error(client.post("/inpaint", data=fields), 415)  # a urlencoded form: no files
    many = {f"f{i}": "1" for i in range(70)}  # more parts than any client sends
    assert_error(client.post("/inpaint", files=files, data=many), 400)
    assert client.get("/healthz").status_code == 200  # still serving


# -- token and CORS --------------------------------------------------------------------------------
CLIENT_ROUTES = [("GET", "/api/v1/server-config"), ("GET", "/api/v1/model"), ("POST", "/api/v1/model"),
                 ("POST", "/api/v1/gen-info"), ("GET", "/api/v1/inputimage"), ("GET", "/api/v1/samplers"),
                 ("POST", "/api/v1/inpaint"), ("POST", "/inpaint"), ("GET", "/server_config"), ("GET", "/model"),
                 ("POST", "/model"), ("GET", "/model_downloaded/lama"), ("GET", "/is_desktop"),
                 ("GET", "/inputimage")]


def test_token_covers_the_client_routes_and_cors_allows_only_the_given_origins(tmp_path):
    allowed = "http://localhost:5173"
    with serve_process(tmp_path, "--cors-origin", allowed, "--cors-origin", "HTTPS://Example.org:443",
                       env={"FASTFILL_TOKEN": "s3cret"}) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        assert "CORS: pages from http://localhost:5173, https://example.org may call the API" in s.log()
        auth = {"Authorization": "Bearer s3cret"}
        for method, path in CLIENT_ROUTES:
            assert_error(c.request(method, path), 401)
            assert_error(c.request(method, path, headers={"Authorization": "Bearer nope"}), 401)
        for path in ("/server_config", "/model", "/is_desktop", "/inputimage", "/model_downloaded/lama",
                     "/api/v1/model", "/api/v1/server-config"):
            assert c.get(path, headers=auth).status_code == 200, path
        image = scene(seed=3)
        r = c.post("/inpaint", headers=auth, data=LAMA_FIELDS,
                   files={"image": ("i.png", png(image)), "mask": ("m.png", png(stroke_mask()))})
        assert r.status_code == 200
        for path in ("/", "/healthz", "/static/app.js", "/docs", "/openapi.json",  # the page, docs stay open
                     "/static-offline-docs/swagger-ui-bundle.js", "/favicon.ico"):
            assert c.get(path).status_code == 200, path

        # CORS: a preflight from an allowed origin is answered (before the token check) ...
        pre = {"Origin": allowed, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
        r = c.options("/api/v1/inpaint", headers=pre)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == allowed
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = c.options("/inpaint", headers={**pre, "Origin": "https://example.org"})
        assert r.headers["access-control-allow-origin"] == "https://example.org"
        # ... its answers, errors included, carry the header (else the page cannot read them) ...
        r = c.post("/api/v1/inpaint", headers={**auth, "Origin": allowed},
                   json={"image": base64.b64encode(png(image)).decode(),
                         "mask": base64.b64encode(png(stroke_mask())).decode(), "sd_seed": 5})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == allowed
        assert "x-seed" in r.headers["access-control-expose-headers"].lower()
        r = c.get("/server_config", headers={"Origin": allowed})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == allowed
        # ... and any other origin gets nothing that lets its page read an answer
        other = {**pre, "Origin": "http://evil.example"}
        r = c.options("/api/v1/inpaint", headers=other)
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = c.get("/api/v1/model", headers={**auth, "Origin": "http://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_is_off_by_default(client):
    """No --cors-origin: no origin's page may read an answer (same-origin only)."""
    pre = {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}
    r = client.options("/api/v1/inpaint", headers=pre)
    assert r.status_code >= 400 and "access-control-allow-origin" not in r.headers
    for method, path in (("GET", "/api/v1/server-config"), ("GET", "/server_config"), ("GET", "/model")):
        r = client.request(method, path, headers={"Origin": "http://localhost:5173"})
        assert r.status_code == 200 and not any(k.startswith("access-control") for k in r.headers)


def test_cors_origin_is_checked_at_start():
    from fastfill.serve import check_cors_origin

    assert check_cors_origin("*") == "*"
    assert check_cors_origin("http://localhost:5173") == "http://localhost:5173"
    assert check_cors_origin("HTTPS://Example.ORG:443") == "https://example.org"
    assert check_cors_origin("http://[::1]:8080") == "http://[::1]:8080"
    assert check_cors_origin("http://example.org:80") == "http://example.org"
    for bad, words in (("localhost:5173", "http(s) origin"), ("http://localhost:5173/", "trailing /"),
                       ("https://example.org/app", "no path"), ("ftp://example.org", "http(s) origin"),
                       ("http://user@example.org", "no path"), ("http://example.org:99999", "not an origin"),
                       ("", "http(s) origin")):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_cors_origin(bad)
    # the CLI refuses it before loading anything: a usage error (exit 2) naming the flag
    code, out, err = invoke("serve", "--cors-origin", "http://localhost:5173/")
    assert code == 2 and "--cors-origin" in err and "trailing /" in err, err
