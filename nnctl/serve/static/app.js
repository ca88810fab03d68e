// The page of `nnctl serve`: a drawing pad and photo upload sent to /api/predict, the answer
// as a bar chart and the input image the network saw, and the model from /api/model.
"use strict";

const TOP_K = 5;
// Line width on the 280-pixel pad. The server crops to the ink and scales the longer side
// to 20 pixels, as MNIST was made; a digit drawn about 200 pixels tall then gets strokes
// about 2 pixels wide, as MNIST's are.
const STROKE = 20;
const COLORS = { train: "#2f6fde", validation: "#e0871b", test: "#2a9d5b" };

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const pen = pad.getContext("2d");

let strokes = [];      // each stroke a list of [x, y] in the pad's pixels
let current = null;    // the stroke being drawn
let photo = false;     // an uploaded photo is on the pad
let classes = [];      // class names by label, from /api/model
let shape = [28, 28];  // the network's input image, rows and columns, from /api/model
let version = 0;       // bumped on every change of the drawing or photo
let session = 0;       // bumped when the input starts over: answers to older ones are dropped
let inFlight = false;  // one drawing request at a time; the newest drawing goes next
let pending = false;

// ---- drawing ----------------------------------------------------------------------------

function blank() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
}

function drawStroke(points) {
  pen.strokeStyle = pen.fillStyle = "#000";
  pen.lineWidth = STROKE;
  pen.lineCap = pen.lineJoin = "round";
  pen.beginPath();
  if (points.length === 1) {
    pen.arc(points[0][0], points[0][1], STROKE / 2, 0, 2 * Math.PI);
    pen.fill();
    return;
  }
  pen.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) pen.lineTo(x, y);
  pen.stroke();
}

function redraw() {
  blank();
  strokes.forEach(drawStroke);
  updateButtons();
}

function updateButtons() {
  const empty = strokes.length === 0 && !photo;
  $("undo").disabled = empty;
  $("clear").disabled = empty;
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

function changed() {
  version += 1;
  pad.dataset.version = String(version);
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  if (photo) {
    photo = false;
    strokes = [];
    session += 1;
  }
  pad.setPointerCapture(event.pointerId);
  current = [padPoint(event)];
  strokes.push(current);
  redraw();
  changed();
  requestPrediction();
});

pad.addEventListener("pointermove", (event) => {
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) current.push(padPoint(e));
  redraw();
  changed();
  requestPrediction();
});

function endStroke() {
  current = null;
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("undo").addEventListener("click", () => {
  if (photo) {
    photo = false;
  } else {
    strokes.pop();
  }
  redraw();
  changed();
  if (strokes.length) {
    requestPrediction();
  } else {
    session += 1;
    resetResult();
  }
});

$("clear").addEventListener("click", () => {
  strokes = [];
  photo = false;
  redraw();
  changed();
  session += 1;
  resetResult();
});

document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    if (!$("undo").disabled) $("undo").click();
  } else if (event.key === "Escape" && !$("clear").disabled) {
    $("clear").click();
  }
});

// ---- predictions ------------------------------------------------------------------------

function requestPrediction() {
  pending = true;
  if (!inFlight) sendDrawing();
}

async function sendDrawing() {
  pending = false;
  if (strokes.length === 0) return;
  inFlight = true;
  const [sent, sentSession] = [version, session];
  const started = performance.now();
  try {
    const png = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const answer = await predict(png, "canvas.png");
    if (sentSession === session) showAnswer(answer, performance.now() - started, sent);
  } catch (error) {
    if (sentSession === session) showError(error.message, sent);
  } finally {
    inFlight = false;
    if (pending) sendDrawing();
  }
}

async function predict(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const response = await fetch("/api/predict?pixels=1", { method: "POST", body: form });
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body[0];
}

async function upload(file) {
  strokes = [];
  current = null;
  photo = true;
  session += 1;
  redraw();
  changed();
  showPhoto(file);
  const [sent, sentSession] = [version, session];
  const started = performance.now();
  try {
    const answer = await predict(file, file.name);
    if (sentSession === session) showAnswer(answer, performance.now() - started, sent);
  } catch (error) {
    if (sentSession === session) showError(error.message, sent);
  }
}

function showPhoto(file) {
  const url = URL.createObjectURL(file);
  const image = new Image();
  image.onload = () => {
    URL.revokeObjectURL(url);
    if (!photo) return;
    const scale = Math.min(pad.width / image.width, pad.height / image.height);
    const w = image.width * scale, h = image.height * scale;
    blank();
    pen.drawImage(image, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  };
  image.onerror = () => URL.revokeObjectURL(url);
  image.src = url;
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) upload(file);
  $("file").value = "";
});

const dropZone = $("input-panel");
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("dropping");
});
dropZone.addEventListener("dragleave", () => pad.classList.remove("dropping"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dropping");
  const file = event.dataTransfer.files[0];
  if (file) upload(file);
});

// ---- the answer -------------------------------------------------------------------------

function className(label) {
  return classes[label] !== undefined ? classes[label] : String(label);
}

function showAnswer(answer, ms, sent) {
  // A softmax output answers probabilities; any other output, scores, drawn from min to max.
  const probabilities = answer.probabilities !== undefined;
  const p = probabilities ? answer.probabilities : answer.scores;
  const [low, high] = probabilities ? [0, 1] : [Math.min(...p), Math.max(...p)];
  const share = (v) => (high > low ? (v - low) / (high - low) : 0);
  const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a]).slice(0, TOP_K);
  const name = className(answer.label);
  const label = $("label");
  label.textContent = name;
  label.classList.toggle("long", name.length > 2);
  $("confidence").textContent = probabilities
    ? `${(100 * p[answer.label]).toFixed(1)}% sure` : `score ${p[answer.label].toFixed(3)}`;
  $("timing").textContent = `answered in ${Math.round(ms)} ms`;
  $("timing").dataset.ms = ms.toFixed(1);
  const bars = $("bars");
  bars.replaceChildren(...order.map((index) => barRow(
    className(index), index, p[index], share(p[index]),
    probabilities ? `${(100 * p[index]).toFixed(1)}%` : p[index].toFixed(3))));
  drawSeen(answer.pixels);
  setStatus(answer.warning || "", false);
  pad.dataset.answered = String(sent);
}

function barRow(name, index, probability, width, text) {
  const row = document.createElement("div");
  row.className = "bar-row";
  row.dataset.label = String(index);
  row.dataset.probability = String(probability);
  const title = document.createElement("span");
  title.className = "name";
  title.textContent = name;
  const track = document.createElement("span");
  track.className = "track";
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.width = `${(100 * width).toFixed(2)}%`;
  fill.style.display = "block";
  track.append(fill);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = text;
  row.append(title, track, value);
  return row;
}

function drawSeen(pixels) {
  const canvas = $("seen");
  [canvas.height, canvas.width] = shape;
  const seen = canvas.getContext("2d");
  const image = seen.createImageData(shape[1], shape[0]);
  for (let i = 0; i < shape[0] * shape[1]; i += 1) {
    const v = Math.round(255 * Math.min(1, Math.max(0, pixels ? pixels[i] : 0)));
    image.data.set([v, v, v, 255], 4 * i);
  }
  seen.putImageData(image, 0, 0);
}

function showError(message, sent) {
  resetResult();
  setStatus(message, true);
  pad.dataset.answered = String(sent);
}

function resetResult() {
  $("label").textContent = "–";
  $("label").classList.remove("long");
  $("confidence").textContent = "draw to start";
  $("timing").textContent = "";
  $("bars").replaceChildren();
  drawSeen(null);
  setStatus("", false);
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ---- the model --------------------------------------------------------------------------

async function loadModel() {
  let model;
  try {
    const response = await fetch("/api/model");
    model = await response.json();
    if (!response.ok) throw new Error(model.error);
  } catch (error) {
    $("model-summary").textContent = `cannot read the model: ${error.message}`;
    return;
  }
  classes = model.classes;
  shape = model.image_shape;
  $("seen-size").textContent = `${shape[1]}×${shape[0]}`;
  drawSeen(null);
  if (model.dataset !== "MNIST") {
    $("tagline").textContent = `Draw or drop a picture and watch the network classify it (${model.dataset}).`;
  }
  $("model-name").textContent = model.file;
  const parts = [`${model.parameters.toLocaleString("en")} parameters`,
                 `${model.epochs} epoch${model.epochs === 1 ? "" : "s"} of ${model.optimizer}`,
                 `${model.dataset}`];
  if (model.test_accuracy !== null) {
    parts.push(`test accuracy ${(100 * model.test_accuracy).toFixed(2)}%`);
  }
  $("model-summary").textContent = parts.join(" · ");
  const rows = [["input", `${model.input} values`, "", ""]].concat(model.layers.map((layer) => [
    layer.name, `${layer.inputs} → ${layer.units}`,
    layer.activation + (layer.dropout ? `, dropout ${layer.dropout}` : ""),
    layer.parameters.toLocaleString("en")]));
  rows.push(["total", "", "", model.parameters.toLocaleString("en")]);
  $("layers").tBodies[0].replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 3) td.className = "num";
      tr.append(td);
    });
    return tr;
  }));
  $("classes").textContent = `classes: ${classes.join(", ")}`;
  drawHistory(model.history);
}

function drawHistory(history) {
  const splits = [...new Set(history.flatMap((row) => Object.keys(row.evaluations || {})))];
  const series = (pick) => [{ name: "train", points: history.map((r) => [r.epoch, pick(r)]) }]
    .concat(splits.map((split) => ({
      name: split,
      points: history.filter((r) => r.evaluations[split])
        .map((r) => [r.epoch, pick(r.evaluations[split], split)]),
    })));
  lineChart($("loss-chart"), series((r) => (r.train_loss !== undefined ? r.train_loss : r.loss)),
            { log: true });
  lineChart($("accuracy-chart"), series((r) => 100 * (r.train_accuracy !== undefined
    ? r.train_accuracy : r.accuracy)), { log: false, top: 100 });
}

function lineChart(canvas, series, { log, top = Infinity }) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#667085";
  const points = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
  if (!points.length) {
    g.fillText("no training history in this file", 10, height / 2);
    return;
  }
  const box = { left: 42, right: width - 8, top: 22, bottom: height - 22 };
  const xs = points.map(([x]) => x), ys = points.map(([, y]) => (log ? Math.log10(y) : y));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const margin = (y1 - y0 || Math.abs(y1) || 1) * 0.08;
  y0 -= margin;
  y1 = Math.min(y1 + margin, Math.max(top, y1));
  const px = (x) => box.left + (x - x0) / (x1 - x0) * (box.right - box.left);
  const py = (y) => box.bottom - ((log ? Math.log10(y) : y) - y0) / (y1 - y0) * (box.bottom - box.top);
  g.strokeStyle = "#d9dee7";
  g.lineWidth = 1;
  g.textAlign = "right";
  for (let i = 0; i <= 3; i += 1) {
    const v = y0 + (y1 - y0) * i / 3;
    const y = box.bottom - (box.bottom - box.top) * i / 3;
    g.beginPath();
    g.moveTo(box.left, y);
    g.lineTo(box.right, y);
    g.stroke();
    const value = log ? 10 ** v : v;
    g.fillText(value >= 10 ? value.toFixed(1) : value.toPrecision(2), box.left - 4, y + 4);
  }
  g.textAlign = "center";
  const epochs = [...new Set(xs)].sort((a, b) => a - b);
  const every = Math.ceil(epochs.length / 8);
  epochs.filter((_, i) => i % every === 0).forEach((x) => g.fillText(String(x), px(x), height - 6));
  let legend = box.right;
  g.textAlign = "right";
  for (const s of [...series].reverse()) {
    const color = COLORS[s.name] || "#444";
    const pts = s.points.filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
    g.strokeStyle = g.fillStyle = color;
    g.lineWidth = 1.8;
    g.beginPath();
    pts.forEach(([x, y], i) => (i ? g.lineTo(px(x), py(y)) : g.moveTo(px(x), py(y))));
    g.stroke();
    pts.forEach(([x, y]) => {
      g.beginPath();
      g.arc(px(x), py(y), 2.2, 0, 2 * Math.PI);
      g.fill();
    });
    g.fillText(s.name, legend, 11);
    legend -= g.measureText(s.name).width + 10;
  }
}

blank();
drawSeen(null);
updateButtons();
pad.dataset.version = "0";
loadModel();
