// The page of brainmri serve: send a file to POST /predict?heatmap=true, show the class, the bars and the heatmap.
"use strict";

const $ = (id) => document.getElementById(id);
let explains = false; // whether the model has heatmaps (GET /model's explanation)

function headers() {
  const token = sessionStorage.getItem("brainmri-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  const body = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  if (response.status === 401) {
    $("token-box").hidden = false;
  }
  if (!response.ok) {
    throw new Error(body.detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadModel() {
  try {
    const model = await call("/model");
    $("token-box").hidden = true;
    explains = model.explanation !== null;
    $("model").textContent = `${model.name}: ${model.method.name}, classes ${model.classes.join(", ")} (version ${model.version})`;
    showError("");
  } catch (error) {
    $("model").textContent = "model unavailable";
    showError(error.message);
  }
}

function showBars(probabilities, predicted) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(probabilities)) {
    const label = document.createElement("span");
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = name === predicted ? "bar top" : "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    bar.dataset.class = name;
    track.append(bar);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)} %`;
    bars.append(label, track, value);
  }
}

async function predict(file) {
  showError("");
  $("status").textContent = `predicting ${file.name}…`;
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const result = await call(`/predict?heatmap=${explains}`, { method: "POST", body: form });
    const one = result.predictions[0];
    $("predicted").textContent = one.predicted;
    showBars(one.probabilities, one.predicted);
    $("figure").hidden = !one.heatmap;
    if (one.heatmap) {
      $("image").src = `data:image/png;base64,${one.heatmap.image_png}`;
      $("overlay").src = `data:image/png;base64,${one.heatmap.overlay_png}`;
      $("method").textContent = one.heatmap.method;
    }
    $("result").hidden = false;
    $("status").textContent = `${file.name}: ${result.model.method} (version ${result.model.version})`;
  } catch (error) {
    $("status").textContent = "";
    showError(`${file.name}: ${error.message}`);
  }
}

$("file").addEventListener("change", (event) => {
  if (event.target.files.length) predict(event.target.files[0]);
});
$("drop").addEventListener("dragover", (event) => {
  event.preventDefault();
  $("drop").classList.add("over");
});
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").classList.remove("over");
  if (event.dataTransfer.files.length) predict(event.dataTransfer.files[0]);
});
$("opacity").addEventListener("input", (event) => {
  $("overlay").style.opacity = event.target.value / 100;
});
$("token-save").addEventListener("click", () => {
  sessionStorage.setItem("brainmri-token", $("token").value);
  loadModel();
});
loadModel();
