// Talking to the Darkroom API: the stored key, JSON calls, uploads and status streams.
// The key goes out as `Authorization: Key …` on every API call (never to result URLs on other hosts).

const KEY_STORAGE = "darkroom.apiKey";

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lives for this page only */
  }
}

export class ApiError extends Error {
  constructor(status, detail, errorType) {
    super(ApiError.describe(status, detail, errorType));
    this.status = status;
    this.detail = detail;
    this.errorType = errorType;
  }

  static describe(status, detail, errorType) {
    let text = detail;
    if (Array.isArray(detail)) {
      text = detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
    } else if (detail && typeof detail === "object") {
      text = JSON.stringify(detail);
    }
    if (status === 401) text = `${text || "unauthorized"} — enter an API key at the top of the page`;
    return `HTTP ${status}${errorType ? ` ${errorType}` : ""}: ${text || "request failed"}`;
  }
}

function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Key ${key}` } : {};
}

async function errorFrom(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    /* not JSON */
  }
  const detail = body && (body.detail ?? body.status ?? body.error);
  const errorType = (body && body.error_type) || resp.headers.get("x-fal-error-type");
  return new ApiError(resp.status, detail ?? resp.statusText, errorType);
}

/** A call to the API (authenticated); resolves to the parsed JSON, throws ApiError on a non-2xx. */
export async function call(method, url, { json, body, signal, okStatuses = [] } = {}) {
  const headers = { ...authHeaders() };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const resp = await fetch(url, { method, headers, body, signal });
  if (!resp.ok && !okStatuses.includes(resp.status)) throw await errorFrom(resp);
  return resp.json();
}

/** POST /storage/upload with the file in a multipart `file` field; resolves to {url, …}. */
export function upload(file, signal) {
  const form = new FormData();
  form.append("file", file, file.name);
  return call("POST", "/storage/upload", { body: form, signal });
}

/** The status stream (SSE) of a request, read with fetch so the key can go in a header. */
export async function* statusStream(statusUrl, signal) {
  const resp = await fetch(`${statusUrl}/stream?logs=1`, {
    headers: { ...authHeaders(), Accept: "text/event-stream" },
    signal,
  });
  if (!resp.ok || !resp.body) throw await errorFrom(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + value).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });

/**
 * Follow a request until COMPLETED: the status stream, else (stream refused or cut) polling.
 * `onStatus` gets every status with the logs accumulated so far; resolves to the last status.
 */
export async function follow(statusUrl, onStatus, signal) {
  const logs = [];
  try {
    for await (const event of statusStream(statusUrl, signal)) {
      logs.push(...(event.logs || []));
      const status = { ...event, logs: [...logs] };
      onStatus(status);
      if (status.status === "COMPLETED") return status;
    }
  } catch (err) {
    if (signal?.aborted) throw err;
    if (err instanceof ApiError && (err.status === 401 || err.status === 404)) throw err;
    console.warn("status stream unavailable, polling instead:", err);
  }
  for (;;) {
    const status = await call("GET", `${statusUrl}?logs=1`, { signal, okStatuses: [202] });
    status.logs = status.logs || [];
    onStatus(status);
    if (status.status === "COMPLETED") return status;
    await sleep(500, signal);
  }
}

/** The result image as a blob URL (so `download` works even for other hosts); null if unreachable. */
export async function blobUrl(url) {
  try {
    const sameOrigin = new URL(url, location.href).origin === location.origin;
    const resp = await fetch(url, { headers: sameOrigin ? authHeaders() : {} });
    if (!resp.ok) return null;
    return URL.createObjectURL(await resp.blob());
  } catch {
    return null;
  }
}
