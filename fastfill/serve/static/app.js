// fastfill's painting page: open an image, paint what should go, Fill, look, refine, download.
// Plain JS, no build step, nothing fetched from elsewhere: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const imageCanvas = $("image"), maskCanvas = $("mask");
const imageCtx = imageCanvas.getContext("2d");
const maskCtx = maskCanvas.getContext("2d", { willReadFrequently: true });
const PAINT = "rgb(255, 40, 40)";
const HISTORY = 30;  // undo steps kept (each holds a mask snapshot at the image's size)

let current = null;   // {blob, bitmap, name}: the image Fill sends (the latest result after a fill)
let before = null;    // the image before the last fill (for Before/After)
let history = [];     // [{image, mask: ImageData|null, painted}]
let at = -1;          // index of the state shown
let painted = false;  // whether the mask has paint
let erasing = false;
let busy = false;
let last = null;      // last pointer position while painting
let resultUrl = null;

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
  $("fill").disabled = !ready || !painted;
  $("compare").disabled = !ready || before === null;
  const dl = $("download");
  dl.classList.toggle("disabled", resultUrl === null);
  dl.setAttribute("aria-disabled", String(resultUrl === null));
}

function drawImage(bitmap) {
  imageCtx.clearRect(0, 0, imageCanvas.width, imageCanvas.height);
  imageCtx.drawImage(bitmap, 0, 0);
}

function snapshot() {
  return painted ? maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height) : null;
}

function pushState() {
  history = history.slice(0, at + 1);
  history.push({ image: current, mask: snapshot(), painted });
  if (history.length > HISTORY) history.shift();
  at = history.length - 1;
  updateButtons();
}

function restore(i) {
  const s = history[i];
  at = i;
  if (s.image !== current) {
    current = s.image;
    drawImage(current.bitmap);
  }
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  if (s.mask) maskCtx.putImageData(s.mask, 0, 0);
  painted = s.painted;
  setCompare(false);
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
  message("");
  current = { blob: file, bitmap, name: file.name };
  before = null;
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = null;
  $("download").removeAttribute("href");
  for (const c of [imageCanvas, maskCanvas]) { c.width = bitmap.width; c.height = bitmap.height; }
  drawImage(bitmap);
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  painted = false;
  history = [];
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
  maskCtx.lineWidth = brushSize() * to.scale;  // the brush's size is on the screen
  maskCtx.beginPath();
  maskCtx.moveTo(from.x, from.y);
  maskCtx.lineTo(to.x, to.y);
  maskCtx.stroke();
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
  if (busy || !current || ev.button !== 0) return;
  setCompare(false);
  maskCanvas.setPointerCapture(ev.pointerId);
  last = toImage(ev);
  stroke(last, last);
  ev.preventDefault();
});
maskCanvas.addEventListener("pointermove", (ev) => {
  showCursor(ev);
  if (last === null) return;
  const p = toImage(ev);
  stroke(last, p);
  last = p;
});
function endStroke() {
  if (last === null) return;
  last = null;
  painted = erasing ? hasPaint() : true;
  pushState();
}
maskCanvas.addEventListener("pointerup", endStroke);
maskCanvas.addEventListener("pointercancel", endStroke);
maskCanvas.addEventListener("pointerleave", () => { $("cursor").style.display = "none"; });

function hasPaint() {
  const d = maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height).data;
  for (let i = 3; i < d.length; i += 4) if (d[i] >= 128) return true;
  return false;
}

function setTool(erase) {
  erasing = erase;
  $("paint").classList.toggle("on", !erase);
  $("erase").classList.toggle("on", erase);
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

async function post(form) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  return fetch("/api/v1/inpaint/file", { method: "POST", body: form, headers });
}

async function errorText(res) {
  let text = res.statusText;
  try {
    const body = await res.json();
    if (body && body.error) text = body.error;
  } catch (e) { /* not JSON: keep the status text */ }
  const what = { 400: "The server cannot use this image or mask",
                 401: "The server needs a token", 413: "Too large",
                 415: "Wrong request type", 503: "The server is busy" }[res.status] || "Fill failed";
  const retry = res.headers.get("Retry-After");
  return `${what} (HTTP ${res.status}): ${text}${retry ? ` — try again in ${retry} s` : ""}`;
}

async function fill() {
  if (busy || !current || !painted) return;
  busy = true;
  $("fill").classList.add("busy");
  $("fill").textContent = "Filling…";
  updateButtons();
  message("");
  const t0 = performance.now();
  try {
    const form = new FormData();
    form.append("image", current.blob, current.name || "image");
    form.append("mask", await maskBlob(), "mask.png");
    let res = await post(form);
    if (res.status === 401) {
      const t = window.prompt("This server needs a token (fastfill serve --token):");
      if (t) { sessionStorage.setItem("fastfill-token", t); res = await post(form); }
    }
    if (!res.ok) { message(await errorText(res)); return; }
    const blob = await res.blob();
    const bitmap = await createImageBitmap(blob);
    before = current;
    current = { blob, bitmap, name: resultName(blob.type) };
    drawImage(bitmap);
    maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    painted = false;
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(blob);
    const dl = $("download");
    dl.href = resultUrl;
    dl.download = current.name;
    pushState();
    status(`${bitmap.width}×${bitmap.height}: filled in ${Math.round(performance.now() - t0)} ms`);
  } catch (e) {
    message(`Fill failed: ${e.message || e} (is the server running?)`);
  } finally {
    busy = false;
    $("fill").classList.remove("busy");
    $("fill").textContent = "Fill";
    updateButtons();
  }
}

function resultName(type) {
  const ext = { "image/jpeg": "jpg", "image/webp": "webp", "image/tiff": "tif", "image/bmp": "bmp",
                "image/gif": "gif" }[type] || "png";
  const stem = ((history[0] && history[0].image.name) || "image").replace(/\.[^.]*$/, "");
  return `${stem}-filled.${ext}`;
}

// -- before / after ------------------------------------------------------------------------------
let comparing = false;
function setCompare(on) {
  if (on === comparing || (on && !before)) return;
  comparing = on;
  $("compare").setAttribute("aria-pressed", String(on));
  $("compare").textContent = on ? "After" : "Before";
  maskCanvas.style.visibility = on ? "hidden" : "";
  drawImage(on ? before.bitmap : current.bitmap);
}

// -- wiring ----------------------------------------------------------------------------------------
$("file").addEventListener("change", (ev) => openFile(ev.target.files[0]));
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
  if ((ev.ctrlKey || ev.metaKey) && k === "z") { ev.preventDefault(); ev.shiftKey ? redo() : undo(); }
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
