"""`fastfill serve` as a newcomer meets it: the README's JSON curl example on an ordinary photo,
run by bash and curl as written, and the page's icon. A real server on loopback."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import serve_process

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_process(tmp_path_factory.mktemp("serve"), "--method", "harmonic") as s:
        yield s


def _readme_json_example() -> str:
    """The README's shell lines that build the JSON body and post it with curl."""
    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "/api/v1/inpaint " in b + " ")
    lines = block.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("{ printf"))
    end = next(i for i, ln in enumerate(lines) if i > start and "-o filled.png" in ln)
    return "\n".join(lines[start:end + 1])


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("base64")), reason="needs curl and base64")
def test_the_readme_json_curl_example_works_for_an_ordinary_photo(server, tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)  # noise: a PNG of ~1.4 MB
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert (tmp_path / "photo.png").stat().st_size > 1_000_000  # base64 of it > 128 kB argv limit
    mask = np.zeros((600, 800), np.uint8)
    mask[200:300, 300:420] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    script = _readme_json_example().replace("http://127.0.0.1:8080", server.url)
    r = subprocess.run(["bash", "-eo", "pipefail", "-c", script + " --fail-with-body"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + (tmp_path / "filled.png").read_text(errors="replace")
    with Image.open(tmp_path / "filled.png") as im:
        out = np.asarray(im.convert("RGB"))
    assert out.shape == photo.shape
    assert (out[mask == 0] == photo[mask == 0]).all() and (out[mask > 0] != photo[mask > 0]).any()


def test_the_page_has_an_icon(server):
    import httpx

    page = httpx.get(server.url + "/").text
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page).group(1)
    for path in (icon, "/favicon.ico"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml"), path
        assert r.content.startswith(b"<svg")
