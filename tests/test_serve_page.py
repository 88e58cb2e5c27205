"""The painting page in a real browser: Debian's Chromium driven by Selenium through Debian's
chromedriver (nothing downloaded at run time). Skips with the reason where they are not installed
(`make test` installs them where it can: scripts/install_chromium.sh).

Loads the page, opens an image, paints a stroke with mouse events, undoes and redoes it, presses
Fill, checks the answer changed the pixels inside the stroke and none outside, undoes the fill,
and shows an API error (413) as a readable message. Screenshots go to out/test-artifacts/.
"""

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import headless_chromium, serve_process

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the 'dev' extra) is not installed")

ARTIFACTS = Path(__file__).resolve().parent.parent / "out" / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    with headless_chromium("1200,900", console_log=False) as driver:
        yield driver


def picture(h=240, w=320):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([30 + 120 * xx / w, 80 + 100 * yy / h, 170 + 0 * xx], -1)
    disc = (yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= 8 ** 2  # inside the 30 px stroke
    img = img + np.random.default_rng(0).normal(0, 6, img.shape)  # grain: a fill never matches it
    img[disc] = (230, 20, 20)
    return np.clip(img, 0, 255).astype(np.uint8)


def canvas_alpha(driver, cid):
    """The alpha channel of a canvas on the page as [H, W] uint8."""
    data = driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let s = ''; for (let i = 3; i < d.length; i += 4) s += String.fromCharCode(d[i]);"
        "return [c.width, c.height, btoa(s)];", cid)
    w, h, b = data
    return np.frombuffer(base64.b64decode(b), np.uint8).reshape(h, w)


def canvas_rgb(driver, cid):
    data = driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let s = ''; for (let i = 0; i < d.length; i++) s += String.fromCharCode(d[i]);"
        "return [c.width, c.height, btoa(s)];", cid)
    w, h, b = data
    return np.frombuffer(base64.b64decode(b), np.uint8).reshape(h, w, 4)[..., :3]


def wait(driver, js, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(js))


def key(driver, k, *mods):
    from selenium.webdriver.common.action_chains import ActionChains

    a = ActionChains(driver)
    for m in mods:
        a.key_down(m)
    a.send_keys(k)
    for m in reversed(mods):
        a.key_up(m)
    a.perform()


def test_paint_fill_undo_in_a_real_browser(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image = picture()
    src = tmp_path / "photo.png"
    Image.fromarray(image).save(src)
    big = tmp_path / "big.png"
    Image.new("RGB", (400, 400), (90, 120, 200)).save(big)  # 160,000 px: over the limit below

    with serve_process(tmp_path, "--max-pixels", 100_000) as server:
        d = browser
        d.get(server.url + "/")
        assert d.title == "fastfill"
        d.find_element(By.ID, "file").send_keys(str(src))
        wait(d, "return !document.getElementById('stage').hidden")
        mask_el = d.find_element(By.ID, "mask")
        assert d.find_element(By.ID, "fill").get_attribute("disabled") is not None  # nothing painted

        # a horizontal stroke across the red disc (offsets from the canvas centre, in screen px;
        # the canvas is shown at its own size here, 320x240)
        ActionChains(d).move_to_element_with_offset(mask_el, -30, 0).click_and_hold() \
            .move_by_offset(15, 0).move_by_offset(15, 0).move_by_offset(15, 0).move_by_offset(15, 0) \
            .release().perform()
        painted = canvas_alpha(d, "mask") >= 128
        assert painted.sum() > 500 and painted[120, 160], "the stroke did not paint the mask"
        assert not painted[:60].any() and not painted[:, :100].any()

        # undo / redo of the stroke (keyboard)
        body = d.find_element(By.TAG_NAME, "body")
        key(d, "z", Keys.CONTROL)
        assert (canvas_alpha(d, "mask") >= 128).sum() == 0
        key(d, "z", Keys.CONTROL, Keys.SHIFT)
        np.testing.assert_array_equal(canvas_alpha(d, "mask") >= 128, painted)
        body.send_keys("]")
        assert int(d.find_element(By.ID, "size").get_attribute("value")) > 30

        d.find_element(By.ID, "fill").click()
        wait(d, "return document.getElementById('status').textContent.includes('filled')")
        d.save_screenshot(str(ARTIFACTS / "serve_page_filled.png"))
        # the answer itself (the Download link's bytes, from the server)
        b64 = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(document.getElementById('download').href).then(r => r.arrayBuffer()).then(b => {"
            "  let s = ''; const u = new Uint8Array(b); for (const x of u) s += String.fromCharCode(x);"
            "  done(btoa(s)); });")
        out = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))
        assert out.shape == image.shape
        changed = np.any(out != image, axis=-1)
        assert not changed[~painted].any(), "pixels outside the stroke changed"
        assert changed[painted].mean() > 0.5, "the stroke was not filled"
        assert out[120, 160, 0] < 150, "the red disc is still there under the stroke"
        # what the page shows is the answer
        np.testing.assert_array_equal(canvas_rgb(d, "image"), out)
        assert (canvas_alpha(d, "mask") >= 128).sum() == 0  # the paint is cleared for refining

        # before / after, then undo the fill: the original and its stroke come back
        d.find_element(By.ID, "compare").click()
        np.testing.assert_array_equal(canvas_rgb(d, "image"), image)
        d.find_element(By.ID, "compare").click()
        np.testing.assert_array_equal(canvas_rgb(d, "image"), out)
        key(d, "z", Keys.CONTROL)
        np.testing.assert_array_equal(canvas_rgb(d, "image"), image)
        np.testing.assert_array_equal(canvas_alpha(d, "mask") >= 128, painted)

        # an image over the server's pixel limit: the 413 is shown, readable
        d.find_element(By.ID, "file").send_keys(str(big))
        wait(d, "return document.getElementById('status').textContent.includes('400×400')")
        ActionChains(d).move_to_element_with_offset(mask_el, 0, 0).click_and_hold() \
            .move_by_offset(20, 5).release().perform()
        d.find_element(By.ID, "fill").click()
        wait(d, "return !document.getElementById('message').hidden")
        msg = d.find_element(By.ID, "message").text
        d.save_screenshot(str(ARTIFACTS / "serve_page_error.png"))
        assert "413" in msg and "megapixels" in msg and "Too large" in msg
        logs = server.log()
    assert '"POST /api/v1/inpaint/file" 200' in logs and '"POST /api/v1/inpaint/file" 413' in logs
