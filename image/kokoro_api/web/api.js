// The service's HTTP API as the studio uses it. URLs are relative to the page (served at <root>/web/),
// so the studio keeps working behind a proxy that adds a path prefix.

const base = new URL("../", document.baseURI);
const url = (path) => new URL(path, base).toString();

export const DEFAULT_LIMITS = Object.freeze({
  max_input_chars: 4096,
  max_unstreamed_chars: 1000,
  speed_min: 0.25,
  speed_max: 4.0,
});

const KEY_STORAGE = "kokoro-studio-api-key";

/** The API key sent as a Bearer token, if the server needs one (kept in this browser's localStorage). */
export function getApiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lasts until reload
  }
}

/** An API failure with a message fit to show to a person. */
export class ApiError extends Error {
  constructor(message, { status = 0, type = "", details = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

function describeValidation(detail) {
  // FastAPI's own 422 body: {"detail": [{"loc": [...], "msg": "..."}]}
  return detail
    .map((d) => {
      const loc = (d.loc || []).filter((p) => p !== "body").join(".");
      return loc ? `${loc}: ${d.msg}` : d.msg;
    })
    .join("; ");
}

async function errorFromResponse(response) {
  const status = response.status;
  const retry = response.headers.get("Retry-After");
  const retryAfter = retry && /^\d+$/.test(retry.trim()) ? Number(retry) : null;
  let type = "";
  let details = null;
  let message = "";
  const body = await response.text().catch(() => "");
  try {
    const data = JSON.parse(body);
    if (data && typeof data === "object") {
      // the plan's {error: "InvalidVoice", ...}, or OpenAI's {error: {message, type, code}} on /v1/...
      type = typeof data.error === "string" ? data.error : (data.error?.code ?? data.error?.type ?? "");
      details = data.details ?? null;
      if (typeof data.message === "string") message = data.message;
      else if (typeof data.error?.message === "string") message = data.error.message;
      else if (Array.isArray(data.detail)) message = describeValidation(data.detail);
      else if (typeof data.detail === "string") message = data.detail;
    }
  } catch {
    message = body.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 200);
  }
  if (!message) message = response.statusText || "The server returned an error.";
  if (status === 503) {
    message = `The server is busy: ${message}`;
    if (retryAfter != null) message += ` Try again in ${retryAfter} s.`;
  } else if (status === 401) {
    message = getApiKey()
      ? `The server refused the API key: ${message} Check it under “API key”.`
      : `This server needs an API key: ${message} Enter it under “API key”.`;
  } else if (status === 413) {
    message = `The request is too large: ${message}`;
  } else if (status >= 500) {
    message = `The server failed: ${message}`;
  }
  const code = type ? `HTTP ${status}, ${type}` : `HTTP ${status}`;
  return new ApiError(`${message} (${code})`, { status, type, details, retryAfter });
}

async function request(path, init = {}) {
  const key = getApiKey();
  const headers = { ...(init.headers || {}) };
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(url(path), { ...init, headers });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`Could not reach the server at ${base.origin}. Is it running? (${err.message})`);
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

async function getJSON(path) {
  const response = await request(path, { headers: { Accept: "application/json" } });
  return response.json();
}

function normalizeVoice(v) {
  // {"id", "name", "language", "gender"}; a bare id also works (its prefix says accent and gender).
  const id = typeof v === "string" ? v : v.id;
  const lang = (typeof v === "object" && v.language) ||
    ({ a: "en-us", b: "en-gb" }[id[0]] ?? "other");
  const gender = (typeof v === "object" && v.gender) ||
    ({ f: "female", m: "male" }[id[1]] ?? "other");
  const fallbackName = id.includes("_") ? id.slice(id.indexOf("_") + 1) : id;
  const name = (typeof v === "object" && v.name) || fallbackName.charAt(0).toUpperCase() + fallbackName.slice(1);
  return { id, name, language: lang.toLowerCase(), gender: gender.toLowerCase() };
}

export async function getVoices() {
  const data = await getJSON("v1/audio/voices");
  const list = Array.isArray(data) ? data : data.voices || data.data || [];
  return list.map(normalizeVoice);
}

/** Server limits; falls back to the documented defaults when the route is missing. */
export async function getLimits() {
  try {
    return { ...DEFAULT_LIMITS, ...(await getJSON("v1/limits")) };
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { ...DEFAULT_LIMITS };
    throw err;
  }
}

/**
 * POST /v1/audio/speech and hand each received chunk to onChunk(Uint8Array).
 * Resolves with {contentType} when the body is complete; rejects with ApiError or AbortError.
 */
export async function synthesize({ input, voice, format, speed, stream }, { signal, onResponse, onChunk }) {
  const body = { model: "kokoro", input, voice, response_format: format, speed };
  if (stream) body.stream_format = "audio";
  const response = await request("v1/audio/speech", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "audio/*, application/json" },
    body: JSON.stringify(body),
    signal,
  });
  const contentType = response.headers.get("Content-Type") || "";
  onResponse?.({ contentType, length: Number(response.headers.get("Content-Length")) || 0 });
  if (!response.body) {
    onChunk(new Uint8Array(await response.arrayBuffer()));
    return { contentType };
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value?.length) onChunk(value);
    }
  } catch (err) {
    if (err.name === "AbortError" || signal?.aborted) throw err;
    throw new ApiError(`The audio stream broke off: ${err.message}`);
  }
  return { contentType };
}
