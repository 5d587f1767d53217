// The playground: pick an app, give an image, tune its fields, run it, watch it, compare, download.
import { ApiError, blobUrl, call, follow, getKey, setKey, upload } from "./api.js";
import { appsFromOpenAPI, renderForm } from "./form.js";
import { SNIPPETS } from "./snippets.js";

const MAX_FILE_BYTES = 50 * 1024 * 1024;
const DEFAULT_APP = "fal-ai/post-processing";
const $ = (id) => document.getElementById(id);

const state = {
  spec: null,
  apps: [],
  app: null,
  form: null,
  file: null,
  uploaded: new Map(), // File -> upload URL
  running: null, // {abort, cancelUrl, started}
  lastBody: null,
};

// ---- key -------------------------------------------------------------------------------------------
function initKey() {
  const input = $("api-key");
  input.value = getKey();
  input.addEventListener("input", () => {
    setKey(input.value.trim());
    state.uploaded.clear();
    renderCode();
  });
  $("api-key-show").addEventListener("click", (e) => {
    const show = input.type === "password";
    input.type = show ? "text" : "password";
    e.currentTarget.textContent = show ? "Hide" : "Show";
    e.currentTarget.setAttribute("aria-pressed", String(show));
  });
}

// ---- apps and their controls ---------------------------------------------------------------------
async function loadApps() {
  try {
    state.spec = await call("GET", "/openapi.json");
  } catch (err) {
    showLoadError(`Cannot load /openapi.json: ${err.message}`);
    return;
  }
  state.apps = appsFromOpenAPI(state.spec);
  const select = $("app-select");
  const byTag = new Map();
  for (const app of state.apps) {
    if (!byTag.has(app.tag)) byTag.set(app.tag, []);
    byTag.get(app.tag).push(app);
  }
  for (const [tag, apps] of byTag) {
    const group = document.createElement("optgroup");
    group.label = tag;
    for (const app of apps) group.append(new Option(app.id, app.id));
    select.append(group);
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("app");
  const first = state.apps.find((a) => a.id === wanted) || state.apps.find((a) => a.id === DEFAULT_APP) || state.apps[0];
  if (!first) {
    showLoadError("This server offers no image apps.");
    return;
  }
  select.value = first.id;
  select.addEventListener("change", () => chooseApp(select.value));
  window.addEventListener("hashchange", () => {
    const app = state.apps.find((a) => a.id === new URLSearchParams(location.hash.slice(1)).get("app"));
    if (app && app !== state.app) {
      select.value = app.id;
      chooseApp(app.id);
    }
  });
  chooseApp(first.id);
}

function showLoadError(message) {
  $("load-error").textContent = message;
  $("load-error").hidden = false;
}

function chooseApp(id) {
  state.app = state.apps.find((a) => a.id === id);
  $("app-summary").textContent = state.app.summary;
  state.form = renderForm(state.spec, state.app, $("controls"));
  history.replaceState(null, "", `#app=${encodeURIComponent(id)}`);
  renderCode();
}

// ---- the input image -----------------------------------------------------------------------------
function isHttpUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

function checkUrl() {
  const value = $("image-url").value.trim();
  const bad = value !== "" && !isHttpUrl(value);
  $("image-url-error").textContent = bad ? "Invalid URL: give an http:// or https:// address" : "";
  $("image-url").setAttribute("aria-invalid", String(bad));
  return !bad;
}

function setPreview(src) {
  const img = $("input-preview");
  img.hidden = !src;
  if (src) img.src = src;
  else img.removeAttribute("src");
}

function initImageInput() {
  const url = $("image-url");
  const file = $("image-file");
  url.addEventListener("input", () => {
    if (url.value.trim()) {
      file.value = "";
      state.file = null;
      $("image-file-error").textContent = "";
    }
    if (checkUrl()) setPreview(isHttpUrl(url.value.trim()) ? url.value.trim() : "");
    renderCode();
  });
  file.addEventListener("change", () => {
    const chosen = file.files[0] || null;
    $("image-file-error").textContent = "";
    if (chosen && chosen.size > MAX_FILE_BYTES) {
      $("image-file-error").textContent = `This file is ${(chosen.size / 2 ** 20).toFixed(1)} MB: the limit is 50 MB.`;
      file.value = "";
      state.file = null;
      return;
    }
    state.file = chosen;
    if (chosen) {
      url.value = "";
      checkUrl();
      setPreview(URL.createObjectURL(chosen));
    }
    renderCode();
  });
}

/** The image_url to send: the URL typed, or the chosen file uploaded (once). */
async function imageUrl(signal) {
  if (state.file) {
    if (!state.uploaded.has(state.file)) {
      setStatus("UPLOADING", "Uploading…");
      const answer = await upload(state.file, signal);
      state.uploaded.set(state.file, answer.url);
    }
    return state.uploaded.get(state.file);
  }
  return $("image-url").value.trim();
}

// ---- code panel ----------------------------------------------------------------------------------
function initCodeTabs() {
  const tabs = $("code-tabs");
  const panels = $("code-panels");
  for (const [i, snippet] of SNIPPETS.entries()) {
    const tab = document.createElement("button");
    Object.assign(tab, { type: "button", id: `tab-${snippet.id}`, textContent: snippet.label });
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-controls", `panel-${snippet.id}`);
    tab.setAttribute("aria-selected", String(i === 0));
    tab.addEventListener("click", () => selectTab(snippet.id));
    tabs.append(tab);
    const panel = document.createElement("div");
    Object.assign(panel, { id: `panel-${snippet.id}`, hidden: i !== 0, className: "code" });
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", tab.id);
    const copy = document.createElement("button");
    Object.assign(copy, { type: "button", className: "copy", textContent: "Copy" });
    copy.setAttribute("aria-label", `Copy the ${snippet.label} code`);
    copy.addEventListener("click", () => copyText(panel.querySelector("code").textContent, copy));
    const pre = document.createElement("pre");
    pre.append(Object.assign(document.createElement("code"), { id: `code-${snippet.id}` }));
    panel.append(copy, pre);
    panels.append(panel);
  }
}

function selectTab(id) {
  for (const snippet of SNIPPETS) {
    const on = snippet.id === id;
    $(`tab-${snippet.id}`).setAttribute("aria-selected", String(on));
    $(`panel-${snippet.id}`).hidden = !on;
  }
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

function currentBody(imageUrlValue) {
  const typed = $("image-url").value.trim();
  const placeholder = state.file ? `<${state.file.name}: uploaded when you run>` : typed || "https://…";
  return { image_url: imageUrlValue || placeholder, ...(state.form ? state.form.values() : {}) };
}

function renderCode(body) {
  if (!state.app) return;
  const ctx = { server: location.origin, app: state.app.id, body: body || currentBody(), withKey: Boolean(getKey()) };
  for (const snippet of SNIPPETS) $(`code-${snippet.id}`).textContent = snippet.render(ctx);
}

// ---- status --------------------------------------------------------------------------------------
const LABELS = { IN_QUEUE: "In queue", IN_PROGRESS: "In progress", COMPLETED: "Completed" };

function setStatus(code, label) {
  const badge = $("status-badge");
  badge.dataset.status = code;
  badge.textContent = label || LABELS[code] || code;
}

/** Progress from the logs: "step 3/25", "tile 2 of 4" or "40%" in the latest line that has one. */
function progressFromLogs(logs) {
  for (let i = logs.length - 1; i >= 0; i -= 1) {
    const text = logs[i].message || "";
    const steps = text.match(/\b(?:step|steps|tile|tiles|image)\s+(\d+)\s*(?:\/|of)\s*(\d+)/i);
    if (steps && Number(steps[2]) > 0) return (100 * Number(steps[1])) / Number(steps[2]);
    const pct = text.match(/(\d{1,3}(?:\.\d+)?)\s*%/);
    if (pct) return Math.min(100, Number(pct[1]));
  }
  return null;
}

function showStatus(status) {
  const failed = status.status === "COMPLETED" && (status.error || status.error_type);
  setStatus(failed ? "FAILED" : status.status, failed ? "Failed" : undefined);
  const position = status.status === "IN_QUEUE" && status.queue_position != null;
  $("queue-position").textContent = position ? `position ${status.queue_position} in the queue` : "";
  const progress = $("progress");
  const pct = status.status === "COMPLETED" ? 100 : status.status === "IN_PROGRESS" ? progressFromLogs(status.logs) : null;
  if (pct === null) progress.removeAttribute("value"); // indeterminate
  else progress.value = pct;
  $("logs").replaceChildren(
    ...status.logs.map((entry) => {
      const li = document.createElement("li");
      li.className = `log ${String(entry.level || "INFO").toLowerCase()}`;
      li.textContent = `${entry.level || "INFO"}  ${entry.message}`;
      return li;
    }),
  );
  if (failed) $("run-error").textContent = `${status.error_type || "error"}: ${status.error || ""}`;
}

function tickElapsed() {
  if (!state.running) return;
  $("elapsed").textContent = `${((performance.now() - state.running.started) / 1000).toFixed(1)} s`;
  requestAnimationFrame(tickElapsed);
}

// ---- result --------------------------------------------------------------------------------------
async function showResult(result, beforeSrc) {
  const images = result.images || [];
  $("result-json").textContent = JSON.stringify(result, null, 2);
  $("result-panel").hidden = false;
  if (!images.length) return;
  const [first, ...more] = images;
  $("before").src = beforeSrc;
  $("after").src = first.url;
  const size = first.file_size ? ` · ${(first.file_size / 1024).toFixed(0)} kB` : "";
  $("result-meta").textContent = `${first.width ?? "?"}×${first.height ?? "?"} · ${first.content_type || ""}${size}`;
  $("more-images").replaceChildren(
    ...more.map((img, i) => {
      const li = document.createElement("li");
      li.append(Object.assign(document.createElement("a"), { href: img.url, textContent: `Image ${i + 2}`, target: "_blank" }));
      return li;
    }),
  );
  const link = $("download");
  link.dataset.url = first.url;
  link.download = first.file_name || "result.png";
  link.href = first.url;
  link.removeAttribute("target");
  const local = await blobUrl(first.url); // a blob: URL downloads even when the result lives on another host
  if (local) link.href = local;
  else link.target = "_blank";
  link.dataset.ready = "true";
}

function initCompare() {
  const slider = $("compare-slider");
  const apply = () => $("compare").style.setProperty("--pos", `${slider.value}%`);
  slider.addEventListener("input", apply);
  apply();
  $("side-by-side").addEventListener("change", (e) => $("compare").classList.toggle("side", e.target.checked));
}

// ---- run -----------------------------------------------------------------------------------------
function validate() {
  let ok = checkUrl();
  if (!state.file && !$("image-url").value.trim()) {
    $("image-url-error").textContent = "Give an image URL or choose a file.";
    ok = false;
  }
  return state.form.validate() && ok;
}

function resetRun() {
  $("run-error").textContent = "";
  $("logs").replaceChildren();
  $("queue-position").textContent = "";
  $("result-panel").hidden = true;
  $("download").dataset.ready = "";
  const progress = $("progress");
  progress.removeAttribute("value");
}

async function run(event) {
  event.preventDefault();
  if (state.running || !state.app) return;
  if (!validate()) {
    setStatus("INVALID", "Check the form");
    return;
  }
  resetRun();
  const abort = new AbortController();
  state.running = { abort, cancelUrl: null, started: performance.now() };
  $("submit").disabled = true;
  tickElapsed();
  const beforeSrc = state.file ? URL.createObjectURL(state.file) : $("image-url").value.trim();
  try {
    const body = currentBody(await imageUrl(abort.signal));
    renderCode(body);
    setStatus("SUBMITTING", "Submitting…");
    const handle = await call("POST", `/${state.app.id}`, { json: body, signal: abort.signal });
    state.running.cancelUrl = handle.cancel_url;
    $("cancel").disabled = false;
    showStatus({ ...handle, logs: [] });
    const final = await follow(handle.status_url, showStatus, abort.signal);
    if (!(final.error || final.error_type)) {
      await showResult(await call("GET", handle.response_url, { signal: abort.signal }), beforeSrc);
    }
  } catch (err) {
    if (!abort.signal.aborted) reportError(err);
  } finally {
    state.running = null;
    $("submit").disabled = false;
    $("cancel").disabled = true;
  }
}

function reportError(err) {
  setStatus("FAILED", "Failed");
  $("progress").value = 0;
  if (err instanceof ApiError && err.status === 422 && state.form.showErrors(err.detail)) {
    $("run-error").textContent = "The server refused some fields: see the messages in the form.";
  } else {
    $("run-error").textContent = err.message || String(err);
  }
}

async function cancelRun() {
  const running = state.running;
  if (!running?.cancelUrl) return;
  try {
    const answer = await call("PUT", running.cancelUrl, { okStatuses: [400, 404] });
    $("queue-position").textContent = `cancel: ${answer.status}`;
  } catch (err) {
    $("run-error").textContent = err.message;
  }
}

function init() {
  initKey();
  initImageInput();
  initCodeTabs();
  initCompare();
  $("run-form").addEventListener("submit", run);
  $("run-form").addEventListener("input", () => renderCode());
  $("run-form").addEventListener("change", () => renderCode());
  $("cancel").addEventListener("click", cancelRun);
  $("reset").addEventListener("click", () => {
    state.form?.reset();
    renderCode();
  });
  loadApps();
}

init();
