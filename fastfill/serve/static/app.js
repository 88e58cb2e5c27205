// fastfill's painting page: open an image, paint what should go, Fill, look, refine, download.
// Plain JS, no build step, nothing fetched from elsewhere: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const imageCanvas = $("image"), maskCanvas = $("mask");
const imageCtx = imageCanvas.getContext("2d");
const maskCtx = maskCanvas.getContext("2d", { willReadFrequently: true });
const PAINT = "rgb(255, 40, 40)";
const HISTORY = 30;  // undo steps kept (each holds its mask run-length coded: a stroke on a
                     // 12-megapixel photo is kilobytes, not the 48 MB of its ImageData)
const FILL_TIMEOUT_MS = 300000;  // a server that stops answering: the page gives up, not hangs

let current = null;   // {blob, bitmap, name, url}: the image Fill sends (the latest result after a
                      // fill; url: a result's download link, null for the opened image)
let before = null;    // the image before the last fill (for Before/After)
let history = [];     // [{image, before, mask: Uint32Array|null (runs), painted}]
let at = -1;          // index of the state shown
let painted = false;  // whether the mask has paint
let erasing = false;
let busy = false;
let pending = null;   // the AbortController of the fill in flight
let stem = "image";   // the opened file's name without its extension (results are named after it)
let last = null;      // last pointer position while painting
let pointer = null;   // the pointer painting: a second finger neither paints nor joins the stroke

function message(text, kind) {
  const m = $("message");
  m.textContent = text || "";
  m.className = kind || "";
  m.hidden = !text;
}

function status(text) { $("status").textContent = text; }

function updateButtons() {
  const ready = current !== null && !busy;
  $("undo").disabled = !ready || at <= 0;
  $("redo").disabled = !ready || at >= history.length - 1;
  $("clear").disabled = !ready || !painted;
  $("fill").disabled = !busy && (current === null || !painted);  // (busy: it cancels)
  $("compare").disabled = !ready || before === null;
  const dl = $("download"), url = current && !busy ? current.url : null;
  dl.classList.toggle("disabled", !url);
  dl.setAttribute("aria-disabled", String(!url));
  if (url) { dl.href = url; dl.download = current.name; } else dl.removeAttribute("href");
}

function drawImage(bitmap) {
  imageCtx.clearRect(0, 0, imageCanvas.width, imageCanvas.height);
  imageCtx.drawImage(bitmap, 0, 0);
}

function maskRuns() {
  // The mask as alternating run lengths (unpainted, painted, ...; painted = alpha >= 128, what
  // Fill sends): one run when nothing is painted.
  const d = maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height).data;
  const runs = [];
  let on = false, n = 0;
  for (let i = 3; i < d.length; i += 4) {
    if ((d[i] >= 128) !== on) { runs.push(n); n = 0; on = !on; }
    n++;
  }
  runs.push(n);
  return Uint32Array.from(runs);
}

function paintRuns(runs) {
  const img = maskCtx.createImageData(maskCanvas.width, maskCanvas.height);
  const px = new Uint32Array(img.data.buffer);
  const bytes = new Uint8Array(Uint32Array.of(0).buffer);
  bytes.set([255, 40, 40, 255]);  // PAINT, opaque, in this machine's byte order
  const paint = new Uint32Array(bytes.buffer)[0];
  let p = 0, on = false;
  for (const n of runs) {
    if (on) px.fill(paint, p, p + n);
    p += n;
    on = !on;
  }
  maskCtx.putImageData(img, 0, 0);
}

function pushState(runs = null) {
  const dropped = history.slice(at + 1);  // (redo steps a new step replaces)
  history = history.slice(0, at + 1);
  history.push({ image: current, before, mask: painted ? runs || maskRuns() : null, painted });
  if (history.length > HISTORY) dropped.push(history.shift());
  at = history.length - 1;
  release(dropped);
  updateButtons();
}

function release(states) {
  // the download links of results no step can show again
  const kept = new Set(history.flatMap((s) => [s.image, s.before]));
  for (const s of states) {
    if (s.image.url && !kept.has(s.image)) { URL.revokeObjectURL(s.image.url); s.image.url = null; }
  }
}

function restore(i) {
  const s = history[i];
  at = i;
  setCompare(false);
  before = s.before;
  if (s.image !== current) {
    current = s.image;
    drawImage(current.bitmap);
  }
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  if (s.mask) paintRuns(s.mask);
  painted = s.painted;
  updateButtons();
}

function undo() { if (!busy && at > 0) restore(at - 1); }
function redo() { if (!busy && at < history.length - 1) restore(at + 1); }

async function openFile(file) {
  if (!file) return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (e) {
    message(`${file.name}: this browser cannot open it as an image`);
    return;
  }
  if (pending) pending.abort();  // (a fill in flight was for the image being replaced)
  message("");
  setCompare(false);
  const old = history;
  history = [];
  release(old);
  current = { blob: file, bitmap, name: file.name, url: null };
  stem = file.name.replace(/\.[^.]*$/, "") || "image";
  before = null;
  for (const c of [imageCanvas, maskCanvas]) { c.width = bitmap.width; c.height = bitmap.height; }
  drawImage(bitmap);
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  painted = false;
  at = -1;
  pushState();
  $("stage").hidden = false;
  $("hint").hidden = true;
  status(`${file.name}: ${bitmap.width}×${bitmap.height}`);
}

// -- painting --------------------------------------------------------------------------------
function brushSize() { return Number($("size").value); }

function setSize(v) {
  const s = $("size");
  s.value = Math.max(Number(s.min), Math.min(Number(s.max), Math.round(v)));
  $("size-value").textContent = s.value;
}

function toImage(ev) {
  const r = maskCanvas.getBoundingClientRect();
  const scale = maskCanvas.width / r.width;
  return { x: (ev.clientX - r.left) * scale, y: (ev.clientY - r.top) * scale, scale };
}

function stroke(from, to) {
  maskCtx.save();
  maskCtx.globalCompositeOperation = erasing ? "destination-out" : "source-over";
  maskCtx.strokeStyle = maskCtx.fillStyle = PAINT;
  maskCtx.lineCap = maskCtx.lineJoin = "round";
  const width = brushSize() * to.scale;  // the brush's size is on the screen
  maskCtx.beginPath();
  if (from.x === to.x && from.y === to.y) {  // a dot (a click, a tap): a line of no length
    maskCtx.arc(to.x, to.y, width / 2, 0, 2 * Math.PI);  // draws nothing
    maskCtx.fill();
  } else {
    maskCtx.lineWidth = width;
    maskCtx.moveTo(from.x, from.y);
    maskCtx.lineTo(to.x, to.y);
    maskCtx.stroke();
  }
  maskCtx.restore();
}

function showCursor(ev) {
  const c = $("cursor"), r = maskCanvas.getBoundingClientRect(), d = brushSize();
  c.style.display = "block";
  c.style.width = c.style.height = `${d}px`;
  c.style.left = `${ev.clientX - r.left - d / 2}px`;
  c.style.top = `${ev.clientY - r.top - d / 2}px`;
}

maskCanvas.addEventListener("pointerdown", (ev) => {
  if (busy || !current || ev.button !== 0 || pointer !== null) return;
  setCompare(false);
  maskCanvas.setPointerCapture(ev.pointerId);
  pointer = ev.pointerId;
  last = toImage(ev);
  stroke(last, last);
  ev.preventDefault();
});
maskCanvas.addEventListener("pointermove", (ev) => {
  showCursor(ev);
  if (last === null || ev.pointerId !== pointer) return;
  const p = toImage(ev);
  stroke(last, p);
  last = p;
});
function endStroke(ev) {
  if (last === null || ev.pointerId !== pointer) return;
  last = pointer = null;
  const runs = maskRuns();
  painted = runs.length > 1;
  pushState(runs);
}
maskCanvas.addEventListener("pointerup", endStroke);
maskCanvas.addEventListener("pointercancel", endStroke);
maskCanvas.addEventListener("pointerleave", () => { $("cursor").style.display = "none"; });

function setTool(erase) {
  erasing = erase;
  $("paint").classList.toggle("on", !erase);
  $("erase").classList.toggle("on", erase);
  $("paint").setAttribute("aria-pressed", String(!erase));
  $("erase").setAttribute("aria-pressed", String(erase));
}

// -- fill --------------------------------------------------------------------------------------
function maskBlob() {
  // White where painted (the API's "white = fill"), black elsewhere, at the image's size.
  const w = maskCanvas.width, h = maskCanvas.height;
  const out = document.createElement("canvas");
  out.width = w; out.height = h;
  const ctx = out.getContext("2d");
  const src = maskCtx.getImageData(0, 0, w, h).data;
  const img = ctx.createImageData(w, h);
  const d = img.data;
  for (let i = 0; i < d.length; i += 4) {
    const v = src[i + 3] >= 128 ? 255 : 0;
    d[i] = d[i + 1] = d[i + 2] = v;
    d[i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

function token() { return sessionStorage.getItem("fastfill-token"); }

async function post(form, signal) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  return fetch("/api/v1/inpaint/file", { method: "POST", body: form, headers, signal });
}

async function errorText(res) {
  let text = res.statusText;
  try {
    const body = await res.json();
    if (body && body.error) text = body.error;
  } catch (e) { /* not JSON: keep the status text */ }
  const size = /the mask is (\d+)x(\d+) but the image is (\d+)x(\d+)/.exec(text);
  if (res.status === 400 && size && size[1] === size[4] && size[2] === size[3]) {
    // a turn the browser did not apply (an orientation tag in WebP's EXIF, in XMP only, ...)
    return `This browser shows the image ${size[1]}×${size[2]}, but its file says to turn it ` +
           `(${size[3]}×${size[4]}): save it turned (any editor's "rotate" does) and open that`;
  }
  const what = { 400: "The server cannot use this image or mask",
                 401: "The server needs a token", 413: "Too large",
                 415: "Wrong request type", 503: "The server is busy" }[res.status] || "Fill failed";
  const retry = res.headers.get("Retry-After");
  return `${what} (HTTP ${res.status}): ${text}${retry ? ` — try again in ${retry} s` : ""}`;
}

let started = 0;  // when the fill in flight began

function setBusy(control) {
  // a fill on its way (its AbortController; the Fill button is its Cancel), or none (null)
  pending = control;
  busy = control !== null;
  if (busy) started = performance.now();
  const f = $("fill");
  f.classList.toggle("busy", busy);
  f.textContent = busy ? "Cancel" : "Fill";
  f.title = busy ? "Cancel the fill (Esc)" : "Remove what is painted";
  updateButtons();
}
async function fill() {
  if (busy) {  // (while busy the button cancels; not a double-click's second click)
    if (pending && performance.now() - started > 500) pending.abort();
    return;
  }
  if (!current || !painted) return;
  const image = current, control = new AbortController();
  setBusy(control);
  message("");
  const shown = $("status").textContent;
  status("Filling…");
  const timer = setTimeout(() => control.abort("timeout"), FILL_TIMEOUT_MS);
  try {
    const form = new FormData();
    form.append("image", image.blob, image.name || "image");
    form.append("mask", await maskBlob(), "mask.png");
    let res = await post(form, control.signal);
    if (res.status === 401) {
      const t = window.prompt("This server needs a token (fastfill serve --token):");
      if (t) { sessionStorage.setItem("fastfill-token", t); res = await post(form, control.signal); }
    }
    if (!res.ok) { message(await errorText(res)); status(shown); return; }
    const blob = await res.blob();
    const bitmap = await createImageBitmap(blob);
    if (control.signal.aborted || current !== image) return;  // (another image opened meanwhile)
    before = current;
    current = { blob, bitmap, name: resultName(blob.type), url: URL.createObjectURL(blob) };
    drawImage(bitmap);
    maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    painted = false;
    pushState();
    status(`${bitmap.width}×${bitmap.height}: filled in ${Math.round(performance.now() - started)} ms`);
  } catch (e) {
    if (current !== image) return;  // (cancelled by opening another image: nothing to say)
    if (control.signal.aborted) {
      const late = control.signal.reason === "timeout";
      message(late ? `No answer from the server in ${FILL_TIMEOUT_MS / 1000} s: gave up`
                   : "Fill cancelled", late ? "" : "info");
    } else {
      message(`Fill failed: ${e.message || e} (is the server running?)`);
    }
    status(shown);
  } finally {
    clearTimeout(timer);
    if (pending === control) {
      setBusy(null);
      // (the Fill button is disabled once its paint is used: keyboard focus goes on, not to the
      // page's start; after a failure or a cancel it stays, for another try)
      if ($("fill").disabled
          && (document.activeElement === $("fill") || document.activeElement === document.body)) {
        (before !== null ? $("compare") : $("paint")).focus();
      }
    }
  }
}

function resultName(type) {
  const ext = { "image/jpeg": "jpg", "image/webp": "webp", "image/tiff": "tif", "image/bmp": "bmp",
                "image/gif": "gif" }[type] || "png";
  return `${stem}-filled.${ext}`;
}

// -- before / after ------------------------------------------------------------------------------
let comparing = false;
function setCompare(on) {
  if (on === comparing || (on && !before)) return;
  comparing = on;
  $("compare").setAttribute("aria-pressed", String(on));
  $("compare").textContent = on ? "After" : "Before";
  // transparent, not hidden: a stroke started while comparing still reaches the mask (and ends
  // the comparison)
  maskCanvas.style.opacity = on ? "0" : "";
  drawImage(on ? before.bitmap : current.bitmap);
}

// -- wiring ----------------------------------------------------------------------------------------
$("file").addEventListener("change", (ev) => { openFile(ev.target.files[0]); ev.target.value = ""; });
$("open").addEventListener("click", () => $("file").click());
$("paint").addEventListener("click", () => setTool(false));
$("erase").addEventListener("click", () => setTool(true));
$("size").addEventListener("input", (ev) => setSize(ev.target.value));
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", () => {
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  painted = false;
  pushState();
});
$("fill").addEventListener("click", fill);
$("compare").addEventListener("click", () => setCompare(!comparing));

document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement && ev.target.type !== "range") return;
  const k = ev.key.toLowerCase();
  if (ev.key === "Escape" && pending) pending.abort();
  else if ((ev.ctrlKey || ev.metaKey) && k === "z") { ev.preventDefault(); ev.shiftKey ? redo() : undo(); }
  else if ((ev.ctrlKey || ev.metaKey) && k === "y") { ev.preventDefault(); redo(); }
  else if (ev.key === "[") setSize(brushSize() / 1.25 - 1);
  else if (ev.key === "]") setSize(brushSize() * 1.25 + 1);
  else if (k === "e" && !ev.ctrlKey) setTool(true);
  else if (k === "b" && !ev.ctrlKey) setTool(false);
});

const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("dragging");
  const f = ev.dataTransfer.files[0];
  if (f) openFile(f);
});

updateButtons();
