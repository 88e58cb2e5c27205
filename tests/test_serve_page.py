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


# A fetch the test releases: the page's request waits (honouring its abort signal) until
# window.releaseFill() is called, so what the page does meanwhile is not a race with the server.
HOLD_FETCH = """
window.realFetch = window.realFetch || window.fetch;
const real = window.realFetch;
window.held = 0;
window.fetch = (url, opts) => new Promise((resolve, reject) => {
  window.held += 1;
  if (opts.signal.aborted) return reject(new DOMException('aborted', 'AbortError'));
  opts.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
  window.releaseFill = () => real(url, opts).then(resolve, reject);
});
"""


def stroke_at(driver, el, dx=0, dy=0, length=30):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element_with_offset(el, dx, dy).click_and_hold() \
        .move_by_offset(length // 2, 0).move_by_offset(length - length // 2, 0).release().perform()


def test_page_states_a_user_reaches(browser, tmp_path):
    """What a person does beyond the straight path: a click paints a dot, Before then another
    image, another image or Cancel while a fill is on its way, undoing a fill (the download
    follows what is shown), a second finger, the keyboard."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    first, second = tmp_path / "photo.png", tmp_path / "other.png"
    Image.fromarray(picture()).save(first)
    Image.fromarray(picture(200, 300)[::-1].copy()).save(second)
    with serve_process(tmp_path) as server:
        d = browser
        d.get(server.url + "/")
        # the keyboard reaches Open (a button; the file input itself is hidden)
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert d.switch_to.active_element.get_attribute("id") == "open"
        d.find_element(By.ID, "file").send_keys(str(first))
        wait(d, "return document.getElementById('status').textContent.includes('320×240')")
        mask_el = d.find_element(By.ID, "mask")

        # a click is a dot of the brush's size, and Fill then has something to fill
        ActionChains(d).move_to_element_with_offset(mask_el, 0, 0).click().perform()
        dot = canvas_alpha(d, "mask") >= 128
        assert 400 < dot.sum() < 1200 and dot[120, 160], dot.sum()  # a 30 px disc: ~700 px
        assert d.find_element(By.ID, "fill").is_enabled()

        # a second finger neither paints nor joins the first one's stroke
        key(d, "z", Keys.CONTROL)
        d.execute_script("""
            const c = document.getElementById('mask'), r = c.getBoundingClientRect();
            const ev = (type, id, x) => c.dispatchEvent(new PointerEvent(type, {pointerId: id,
                pointerType: 'touch', isPrimary: id === 1, button: 0, buttons: 1, bubbles: true,
                clientX: r.left + x, clientY: r.top + 60}));
            ev('pointerdown', 1, 40); ev('pointerdown', 2, 280);
            ev('pointermove', 2, 200); ev('pointermove', 1, 60);
            ev('pointerup', 2, 200); ev('pointerup', 1, 60);""")
        touched = canvas_alpha(d, "mask") >= 128
        assert touched[60, 40:61].all() and not touched[:, 120:].any()

        # Fill, Before, then another image: the new one is shown and can be painted
        d.find_element(By.ID, "fill").click()
        wait(d, "return document.getElementById('status').textContent.includes('filled')")
        assert d.find_element(By.ID, "download").get_attribute("aria-disabled") == "false"
        assert d.switch_to.active_element.get_attribute("id") == "compare"  # focus goes on
        d.find_element(By.ID, "compare").click()
        d.find_element(By.ID, "file").send_keys(str(second))
        wait(d, "return document.getElementById('status').textContent.includes('300×200')")
        assert d.find_element(By.ID, "compare").text == "Before"
        stroke_at(d, mask_el)
        assert (canvas_alpha(d, "mask") >= 128).sum() > 300, "a stroke after Before painted nothing"
        np.testing.assert_array_equal(canvas_rgb(d, "image"), picture(200, 300)[::-1])

        # another image opened while a fill is on its way: the answer is not drawn on it
        d.execute_script(HOLD_FETCH)
        d.find_element(By.ID, "fill").click()
        wait(d, "return window.held === 1")
        assert d.find_element(By.ID, "fill").text == "Cancel"
        d.find_element(By.ID, "file").send_keys(str(first))
        wait(d, "return document.getElementById('status').textContent.includes('320×240')")
        d.execute_script("window.releaseFill()")
        stroke_at(d, mask_el)
        d.execute_script(HOLD_FETCH)
        ActionChains(d).double_click(d.find_element(By.ID, "fill")).perform()  # (not a Cancel)
        wait(d, "return window.held === 1")
        notes = tmp_path / "notes.png"
        notes.write_text("not an image")
        d.find_element(By.ID, "file").send_keys(str(notes))  # (nothing opened: nothing cancelled)
        wait(d, "return document.getElementById('message').textContent.includes('cannot open')")
        assert d.find_element(By.ID, "fill").text == "Cancel"
        import time

        time.sleep(0.6)
        d.find_element(By.ID, "fill").click()  # Cancel
        wait(d, "return document.getElementById('message').textContent.includes('cancelled')")
        assert d.find_element(By.ID, "fill").text == "Fill"
        assert d.switch_to.active_element.get_attribute("id") == "fill"  # (for another try)
        np.testing.assert_array_equal(canvas_rgb(d, "image"), picture())
        assert d.execute_script("return document.getElementById('image').width") == 320

        # the real fill, then undo: the original is shown and there is nothing to download
        d.execute_script(HOLD_FETCH)
        d.find_element(By.ID, "fill").click()
        wait(d, "return window.held === 1")
        d.execute_script("window.releaseFill()")
        wait(d, "return document.getElementById('status').textContent.includes('filled')")
        assert d.find_element(By.ID, "download").get_attribute("download") == "photo-filled.png"
        key(d, "z", Keys.CONTROL)
        np.testing.assert_array_equal(canvas_rgb(d, "image"), picture())
        assert d.find_element(By.ID, "download").get_attribute("aria-disabled") == "true"
        assert d.find_element(By.ID, "compare").get_attribute("disabled") is not None
        key(d, "z", Keys.CONTROL, Keys.SHIFT)
        assert d.find_element(By.ID, "download").get_attribute("aria-disabled") == "false"
        # a result no step can show again (undone, then a new stroke) lets its memory go
        url = d.find_element(By.ID, "download").get_attribute("href")
        key(d, "z", Keys.CONTROL)
        stroke_at(d, mask_el, 0, 40)
        assert d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "(window.realFetch || fetch)(arguments[0]).then(() => done('fetched'),"
            "                                             () => done('released'));", url) == "released"

        # a turn that the browser does not apply (XMP's tiff:Orientation alone) but the server
        # does: the page says what to do, not to send a form field
        turned = tmp_path / "turned.jpg"
        Image.fromarray(picture()).save(turned, quality=95, xmp=(
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
            b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
            b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'))
        d.execute_script("window.fetch = window.realFetch")
        d.find_element(By.ID, "file").send_keys(str(turned))
        wait(d, "return document.getElementById('status').textContent.includes('turned.jpg')")
        if d.execute_script("return document.getElementById('image').width") == 320:
            stroke_at(d, mask_el)
            d.find_element(By.ID, "fill").click()
            wait(d, "return !document.getElementById('message').hidden")
            msg = d.find_element(By.ID, "message").text
            assert "turn" in msg and "resize_mask" not in msg, msg
        logs = server.log()
    # the first fill and the last: the two cancelled ones (by opening, by Cancel) never went out
    assert logs.count('"POST /api/v1/inpaint/file" 200') == 2
