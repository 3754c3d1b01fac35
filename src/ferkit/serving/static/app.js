// fer serve's page: send photos or webcam frames to POST /api/predict and draw what comes back.
// No framework and nothing from the network: the page must work offline, served by the app alone.
"use strict";

const LIVE_INTERVAL_MS = 333; // about 3 frames a second; the next frame waits for the last answer
// Live mode: a face keeps a track from frame to frame, and its label shows the track's probabilities
// averaged over time, so that it does not flicker. The rules of `fer predict`'s video tracks: boxes
// overlapping by at least MIN_OVERLAP (intersection over union) are the same face, matched greedily,
// best overlap first; a track unseen for MAX_GAP_MS ends, and a face that comes back gets a new one.
const TRACKING = { minOverlap: 0.3, maxGapMs: 1000, timeConstantMs: 500 };
const SNAPSHOT_QUALITY = 0.9;
// Each class's colour comes from /api/health (the hues of `fer predict --annotate`); grey until then.
const FALLBACK_COLOUR = "#787878";

const state = { classes: [], colours: {}, maxBytes: 10 * 1024 * 1024, stream: null, live: false, liveRun: 0 };
const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(value) {
  return `${Math.round(value * 100)}%`;
}

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1).replace(/\.0$/, "")} MB`;
}

function colour(emotion) {
  return state.colours[emotion] || FALLBACK_COLOUR;
}

function setStatus(text) {
  $("status").textContent = text;
}

async function loadHealth() {
  try {
    const response = await fetch("/api/health");
    const health = await response.json();
    state.classes = health.classes;
    state.colours = health.colours || {};
    state.maxBytes = health.max_upload_bytes;
    const model = health.model;
    $("model").textContent = `Model ${model.name} (${model.architecture}, ${model.kind}), ` +
      `${health.classes.length} emotions: ${health.classes.join(", ")}; face detector ${health.detector}. ` +
      `Uploads up to ${megabytes(state.maxBytes)}.`;
  } catch (error) {
    $("model").textContent = `Cannot reach the server (${error.message}).`;
  }
}

// Intersection over union of two {x, y, w, h} boxes.
function overlap(a, b) {
  const width = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const height = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  const inter = Math.max(0, width) * Math.max(0, height);
  const union = a.w * a.h + b.w * b.h - inter;
  return union > 0 ? inter / union : 0;
}

// Face tracks through the live frames. `update(faces, timeMs)` takes one frame's faces (as the API
// gives them) and the time the frame was taken, and returns them in the same order, each with its
// `track` number (from 1, in order of appearance) and its track's probabilities: an exponential
// moving average with a time constant of `timeConstantMs`. Each frame's weight depends on the time
// since the track's previous frame, not on a frame count, so the labels settle as fast at 1 frame
// a second as at 30. A new track starts from its first frame's probabilities.
function createTracker(options = {}) {
  const { minOverlap, maxGapMs, timeConstantMs } = { ...TRACKING, ...options };
  let tracks = [];
  let count = 0;
  function update(faces, timeMs) {
    tracks = tracks.filter((track) => timeMs - track.lastSeen <= maxGapMs);
    const pairs = [];
    faces.forEach((face, i) => tracks.forEach((track, j) => {
      const score = overlap(face.box, track.box);
      if (score >= minOverlap) pairs.push({ score, i, j });
    }));
    pairs.sort((a, b) => b.score - a.score);
    const matched = new Map();
    const taken = new Set();
    for (const { i, j } of pairs) {
      if (matched.has(i) || taken.has(j)) continue;
      matched.set(i, tracks[j]);
      taken.add(j);
    }
    return faces.map((face, i) => {
      let track = matched.get(i);
      if (!track) {
        count += 1;
        track = { number: count, probabilities: { ...face.probabilities }, lastSeen: timeMs };
        tracks.push(track);
      } else {
        const weight = 1 - Math.exp(-Math.max(0, timeMs - track.lastSeen) / timeConstantMs);
        for (const [name, value] of Object.entries(face.probabilities)) {
          const previous = track.probabilities[name] ?? value;
          track.probabilities[name] = previous + weight * (value - previous);
        }
      }
      track.box = face.box;
      track.lastSeen = timeMs;
      const probabilities = { ...track.probabilities };
      const emotion = Object.keys(probabilities).reduce((best, name) =>
        (probabilities[name] > probabilities[best] ? name : best));
      return { ...face, track: track.number, emotion, score: probabilities[emotion], probabilities };
    });
  }
  return { update };
}
// For the browser tests, which check the smoothing without a camera.
window.ferTracking = { createTracker, overlap, TRACKING };

// A clear sentence for each way an upload can fail.
function problemText(status, detail) {
  if (status === 413) return `Too large: ${detail}.`;
  if (status === 422 || status === 400) return `Not a usable image: ${detail}.`;
  return `The server answered ${status}: ${detail}`;
}

async function predict(blob, name) {
  const body = new FormData();
  body.append("file", blob, name);
  let response;
  try {
    response = await fetch("/api/predict", { method: "POST", body });
  } catch (error) {
    return { error: `Cannot reach the server (${error.message}).` };
  }
  let payload = {};
  try {
    payload = await response.json();
  } catch (error) {
    payload = { detail: response.statusText };
  }
  if (!response.ok) return { error: problemText(response.status, payload.detail || response.statusText) };
  return { result: payload };
}

function drawBoxes(frame, result) {
  for (const face of result.faces) {
    const box = element("div", "box");
    box.style.left = `${(100 * face.box.x) / result.width}%`;
    box.style.top = `${(100 * face.box.y) / result.height}%`;
    box.style.width = `${(100 * face.box.w) / result.width}%`;
    box.style.height = `${(100 * face.box.h) / result.height}%`;
    box.style.borderColor = colour(face.emotion);
    const track = face.track === undefined ? "" : ` #${face.track}`;
    if (track) box.dataset.track = face.track;
    const label = element("span", "box-label", `${face.emotion} ${percent(face.score)}${track}`);
    label.style.background = colour(face.emotion);
    box.append(label);
    frame.append(box);
  }
}

function faceDetails(face, number) {
  const block = element("div", "face");
  const title = element("h3", null, face.track === undefined ? `Face ${number}: ` : `Face #${face.track}: `);
  const emotion = element("span", "emotion", face.emotion);
  emotion.style.color = colour(face.emotion);
  title.append(emotion, ` ${percent(face.score)}`);
  block.append(title);
  for (const name of state.classes.length ? state.classes : Object.keys(face.probabilities)) {
    const value = face.probabilities[name];
    const row = element("div", "bar-row");
    row.dataset.emotion = name;
    const bar = element("span", "bar");
    const fill = element("span", "fill");
    fill.style.width = percent(value);
    fill.style.background = colour(name);
    bar.append(fill);
    row.append(element("span", "name", name), bar, element("span", "value", percent(value)));
    block.append(row);
  }
  return block;
}

function newCard(name, imageUrl) {
  const card = element("article", "result");
  card.dataset.state = "pending";
  card.append(element("h2", null, name));
  const frame = element("div", "frame");
  const image = element("img");
  image.alt = name;
  image.src = imageUrl;
  frame.append(image);
  card.append(frame, element("p", "message muted", "Classifying..."));
  return card;
}

function showResult(card, outcome) {
  const message = card.querySelector(".message");
  if (outcome.error) {
    card.dataset.state = "error";
    card.querySelector(".frame").remove();
    message.className = "message error";
    message.textContent = outcome.error;
    return;
  }
  const result = outcome.result;
  card.dataset.state = "done";
  drawBoxes(card.querySelector(".frame"), result);
  if (!result.faces.length) {
    message.className = "message notice";
    message.textContent = `No face found in this ${result.width}x${result.height} image.`;
    return;
  }
  message.className = "message muted";
  const faces = result.faces.length === 1 ? "1 face" : `${result.faces.length} faces`;
  message.textContent = `${faces} in ${result.width}x${result.height} pixels, classified in ${result.elapsed_ms} ms` +
    (result.smoothed ? `; each face's label averaged over about ${TRACKING.timeConstantMs / 1000} s.` : ".");
  const details = element("div", "faces");
  result.faces.forEach((face, index) => details.append(faceDetails(face, index + 1)));
  card.append(details);
}

async function classifyFile(file, card) {
  if (file.size > state.maxBytes) {
    showResult(card, { error: `Too large: ${megabytes(file.size)}, over the ${megabytes(state.maxBytes)} limit.` });
    return;
  }
  showResult(card, await predict(file, file.name));
}

async function classifyFiles(files) {
  const list = Array.from(files);
  if (!list.length) return;
  // Cards appear at once, newest first; the uploads then go one at a time, in order.
  const cards = list.map((file) => newCard(file.name, URL.createObjectURL(file)));
  $("results").prepend(...cards);
  setStatus(`Classifying ${list.length} image${list.length === 1 ? "" : "s"}...`);
  for (let index = 0; index < list.length; index += 1) await classifyFile(list[index], cards[index]);
  setStatus(`Done: ${list.length} image${list.length === 1 ? "" : "s"}.`);
}

function grabFrame() {
  const video = $("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", SNAPSHOT_QUALITY));
}

function setCameraButtons(running) {
  $("camera-start").disabled = running;
  $("snapshot").disabled = !running;
  $("live").disabled = !running;
  $("camera-stop").disabled = !running;
  $("camera").hidden = !running;
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("This browser gives no webcam to this page: open it as http://localhost or over HTTPS.");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    setStatus(`No webcam: ${error.message || error.name}.`);
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  await video.play().catch(() => {});
  setCameraButtons(true);
  setStatus("Webcam on: take a snapshot, or tick Live.");
}

function stopCamera() {
  state.live = false;
  $("live").checked = false;
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  $("video").srcObject = null;
  setCameraButtons(false);
  setStatus("Webcam off.");
}

async function snapshot() {
  if (!$("video").videoWidth) return;
  const blob = await grabFrame();
  const name = `webcam ${new Date().toLocaleTimeString()}.jpg`;
  const card = newCard(name, URL.createObjectURL(blob));
  $("results").prepend(card);
  showResult(card, await predict(blob, name));
}

async function liveLoop() {
  let previousUrl = null;
  // Live switched off and on again while a frame was out starts a new run; the old one ends.
  state.liveRun += 1;
  const run = state.liveRun;
  const tracker = createTracker(); // a new live run numbers its faces from 1 again
  let frames = 0;
  while (state.live && state.stream && state.liveRun === run) {
    const started = performance.now();
    if ($("video").videoWidth) {
      const blob = await grabFrame();
      const url = URL.createObjectURL(blob);
      const card = newCard("live", url);
      frames += 1;
      card.dataset.frame = frames;
      const outcome = await predict(blob, "live.jpg");
      if (!state.live || state.liveRun !== run) break;
      if (outcome.result) {
        const faces = tracker.update(outcome.result.faces, started); // the time the frame was taken
        outcome.result = { ...outcome.result, faces, smoothed: true };
      }
      showResult(card, outcome);
      $("live-result").replaceChildren(card);
      if (previousUrl) URL.revokeObjectURL(previousUrl);
      previousUrl = url;
    }
    const wait = LIVE_INTERVAL_MS - (performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
  }
}

function toggleLive() {
  state.live = $("live").checked;
  if (state.live) liveLoop();
  else $("live-result").replaceChildren();
}

function setUpDropping() {
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    document.body.classList.remove("dragging");
    classifyFiles(event.dataTransfer.files);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  loadHealth();
  $("files").addEventListener("change", (event) => {
    classifyFiles(event.target.files);
    event.target.value = ""; // choosing the same file again must fire `change` again
  });
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("snapshot").addEventListener("click", snapshot);
  $("live").addEventListener("change", toggleLive);
  setUpDropping();
});
