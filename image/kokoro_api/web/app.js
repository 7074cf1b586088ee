// Kokoro Studio: wires the script, the voice mixer, the output settings, the player and the history.

import { ApiError, DEFAULT_LIMITS, getApiKey, getLimits, getVoices, setApiKey, synthesize } from "./api.js";
import { History } from "./history.js";
import { Mixer } from "./mixer.js";
import { Player } from "./player.js";
import {
  MIME, concatBytes, countChars, countWords, estimateSeconds, fileName, fixWavHeader, formatBytes,
  formatTime, pcmToWav, wavByteRate,
} from "./util.js";

const $ = (id) => document.getElementById(id);
const SETTINGS_KEY = "kokoro-studio-settings";

const el = {
  serverState: $("server-state"),
  error: $("error"),
  errorText: $("error-text"),
  errorClose: $("error-close"),
  script: $("script"),
  charCount: $("char-count"),
  charLimit: $("char-limit"),
  wordCount: $("word-count"),
  speed: $("speed"),
  speedValue: $("speed-value"),
  generate: $("generate"),
  cancel: $("cancel"),
  progressWrap: $("progress-wrap"),
  progress: $("progress"),
  progressText: $("progress-text"),
  genStatus: $("gen-status"),
  historyList: $("history-list"),
  historyEmpty: $("history-empty"),
  historyClear: $("history-clear"),
};

const state = { limits: { ...DEFAULT_LIMITS }, busy: null, voicesLoaded: false };

const mixer = new Mixer({
  picker: $("voice-picker"),
  blendPicker: $("blend-picker"),
  addButton: $("voice-add"),
  list: $("mix-list"),
  mixInput: $("mix-string"),
  copyButton: $("mix-copy"),
  status: $("mix-status"),
});

const player = new Player({
  audio: $("audio"),
  playButton: $("play"),
  canvas: $("waveform"),
  note: $("wave-note"),
  current: $("time-current"),
  total: $("time-total"),
  download: $("download"),
});

const history = new History();

// ---------------------------------------------------------------- errors and status

function showError(message) {
  el.errorText.textContent = message;
  el.error.hidden = false;
}

function clearError() {
  el.error.hidden = true;
  el.errorText.textContent = "";
}

el.errorClose.addEventListener("click", clearError);

function needsKey(err) {
  if (err instanceof ApiError && err.status === 401) {
    $("api-key-box").open = true;
    return true;
  }
  return false;
}

$("api-key").value = getApiKey();
$("api-key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setApiKey($("api-key").value.trim());
  clearError();
  if (!state.voicesLoaded) init();
  else el.genStatus.textContent = "API key saved.";
});

function describe(err) {
  if (err instanceof ApiError) return err.message;
  return `Something went wrong: ${err?.message || err}`;
}

// ---------------------------------------------------------------- settings kept across reloads

function format() {
  return document.querySelector("input[name=format]:checked").value;
}

function saveSettings() {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify({
      text: el.script.value, voice: mixer.value, format: format(), speed: Number(el.speed.value),
    }));
  } catch {
    // storage full or disabled: nothing to keep
  }
}

function loadSettings() {
  try {
    return JSON.parse(localStorage.getItem(SETTINGS_KEY) || "null") || {};
  } catch {
    return {};
  }
}

function applySettings({ text, voice, format: fmt, speed }) {
  if (typeof text === "string") el.script.value = text;
  if (fmt) {
    const radio = document.querySelector(`input[name=format][value="${CSS.escape(fmt)}"]`);
    if (radio) radio.checked = true;
  }
  if (Number.isFinite(speed)) el.speed.value = String(speed);
  if (voice && state.voicesLoaded) mixer.value = voice;
  updateCount();
  updateSpeed();
}

// ---------------------------------------------------------------- script and output controls

function updateCount() {
  const chars = countChars(el.script.value);
  el.charCount.textContent = String(chars);
  el.wordCount.textContent = String(countWords(el.script.value));
  el.charLimit.textContent = String(state.limits.max_input_chars);
  const over = chars > state.limits.max_input_chars;
  el.script.setAttribute("aria-invalid", over ? "true" : "false");
  el.charCount.parentElement.classList.toggle("over", over);
}

function updateSpeed() {
  el.speedValue.textContent = `${Number(el.speed.value).toFixed(2)}×`;
}

el.script.addEventListener("input", () => {
  updateCount();
  saveSettings();
});
el.speed.addEventListener("input", () => {
  updateSpeed();
  saveSettings();
});
for (const radio of document.querySelectorAll("input[name=format]")) radio.addEventListener("change", saveSettings);
mixer.addEventListener("change", () => {
  if (state.voicesLoaded) saveSettings();
});

el.script.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    generate();
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && state.busy) {
    e.preventDefault();
    cancel();
  }
});

// ---------------------------------------------------------------- generation

function setBusy(job) {
  state.busy = job;
  el.generate.disabled = Boolean(job);
  el.generate.textContent = job ? "Generating…" : "Generate";
  el.cancel.hidden = !job;
  el.progressWrap.hidden = !job;
  if (job) {
    el.progress.removeAttribute("value");
    el.progressText.textContent = "Waiting for the server…";
  }
}

function cancel() {
  if (!state.busy) return;
  state.busy.controller.abort();
}

el.cancel.addEventListener("click", cancel);
el.generate.addEventListener("click", () => generate());

async function generate() {
  if (state.busy) return;
  clearError();
  el.genStatus.textContent = "";
  const text = el.script.value.trim();
  const chars = countChars(text);
  if (!chars) {
    showError("The script is empty: type some text to speak first.");
    el.script.focus();
    return;
  }
  if (chars > state.limits.max_input_chars) {
    showError(`The script has ${chars} characters; the server accepts at most ${state.limits.max_input_chars}. ` +
      "Shorten it or split it into parts.");
    el.script.focus();
    return;
  }
  const voice = mixer.value;
  if (!voice) {
    showError("Choose at least one voice for the mix.");
    $("voice-picker").focus();
    return;
  }
  const fmt = format();
  const speed = Number(el.speed.value);
  const mime = MIME[fmt] || "application/octet-stream";
  const createdAt = Date.now();
  const name = fileName({ text, voice, format: fmt, createdAt });
  // Stream whenever the server requires it, and for MP3 whenever the browser can play MP3 as it arrives.
  const canPlayWhileStreaming = fmt === "mp3" && window.MediaSource && MediaSource.isTypeSupported(mime);
  const stream = chars > state.limits.max_unstreamed_chars || Boolean(canPlayWhileStreaming);

  const controller = new AbortController();
  const job = { controller };
  setBusy(job);
  const started = performance.now();
  const expected = estimateSeconds(text, speed);
  const chunks = [];
  let received = 0;
  let length = 0;
  // The player keeps the previous audio until this response starts: a request that fails leaves it be.
  let sink = null;
  const playerSink = () => (sink ??= player.stream({ mime: fmt === "pcm" ? MIME.wav : mime, fileName: name }));

  const tick = () => {
    const elapsed = ((performance.now() - started) / 1000).toFixed(1);
    if (!received) {
      el.progressText.textContent = `Synthesizing… ${elapsed} s`;
      return;
    }
    let fraction = null;
    let audioSeconds = null;
    if (fmt === "wav") {
      const rate = wavByteRate(chunks[0]);
      if (rate) audioSeconds = Math.max(0, received - 44) / rate;
    } else if (fmt === "pcm") {
      audioSeconds = received / 48000;
    } else if (sink?.usesMse) {
      audioSeconds = sink.streamedSeconds();
    }
    if (length) fraction = received / length;
    else if (audioSeconds != null) fraction = Math.min(0.95, audioSeconds / expected);
    if (fraction != null) el.progress.value = fraction;
    el.progressText.textContent = `Receiving… ${formatBytes(received)}` +
      (audioSeconds != null ? ` · ${formatTime(audioSeconds)} of audio` : "") + ` · ${elapsed} s`;
  };
  const timer = setInterval(tick, 250);

  try {
    await synthesize({ input: text, voice, format: fmt, speed, stream }, {
      signal: controller.signal,
      onResponse: ({ length: n }) => {
        length = n;
        playerSink();
      },
      onChunk: (chunk) => {
        chunks.push(chunk);
        received += chunk.length;
        if (fmt !== "pcm") playerSink().push(chunk);
        tick();
      },
    });
    let blob;
    if (fmt === "pcm") {
      // Raw samples: the player gets them with a WAV header, the download is the raw file asked for.
      blob = new Blob([concatBytes(chunks, received)], { type: mime });
      await player.load(new Blob([pcmToWav(concatBytes(chunks, received))], { type: MIME.wav }),
        { fileName: name, download: blob });
    } else if (fmt === "wav") {
      // A streamed header has placeholder sizes: hand the player a fixed file.
      blob = new Blob([fixWavHeader(concatBytes(chunks, received))], { type: mime });
      await player.load(blob, { fileName: name });
    } else {
      blob = await playerSink().finish();
    }
    if (!blob.size) throw new ApiError("The server returned no audio.");
    el.progress.value = 1;
    const seconds = player.duration;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    el.genStatus.textContent = `Done: ${formatTime(seconds)} of audio (${formatBytes(blob.size)}) in ${secs} s.`;
    await history.add({ createdAt, text, voice, format: fmt, speed, duration: seconds, blob, fileName: name, mime })
      .catch((err) => console.warn("history not saved", err));
    await renderHistory();
  } catch (err) {
    if (err.name === "AbortError" || controller.signal.aborted) {
      sink?.abort();
      el.genStatus.textContent = "Cancelled.";
    } else {
      if (sink) player.reset("No audio"); // the stream broke off: what arrived is not a whole file
      showError(describe(err));
      needsKey(err);
    }
  } finally {
    clearInterval(timer);
    setBusy(null);
  }
}

// ---------------------------------------------------------------- history

function when(ts) {
  const d = new Date(ts);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

async function renderHistory() {
  let items = [];
  try {
    items = await history.list();
  } catch (err) {
    el.historyEmpty.textContent = `History is unavailable: ${err.message}`;
    el.historyEmpty.hidden = false;
    return;
  }
  el.historyEmpty.textContent = "Nothing generated yet.";
  el.historyEmpty.hidden = items.length > 0;
  el.historyClear.disabled = items.length === 0;
  el.historyList.replaceChildren(...items.map((item) => {
    const li = document.createElement("li");
    li.className = "history-item";
    li.dataset.id = String(item.id);
    const snippet = item.text.length > 140 ? `${item.text.slice(0, 140)}…` : item.text;
    const short = item.text.length > 40 ? `${item.text.slice(0, 40)}…` : item.text;
    const meta = document.createElement("p");
    meta.className = "meta";
    const voice = document.createElement("strong");
    voice.textContent = item.voice;
    meta.append(voice, ` · ${item.format.toUpperCase()} · ${Number(item.speed).toFixed(2)}× · ` +
      `${formatTime(item.duration)} · ${when(item.createdAt)}`);
    const text = document.createElement("p");
    text.className = "snippet";
    text.textContent = snippet;
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(
      button("Play", `Play “${short}”`, async () => {
        clearError();
        const entry = await history.get(item.id);
        if (!entry) return renderHistory();
        const playable = entry.format === "pcm"
          ? new Blob([pcmToWav(new Uint8Array(await entry.blob.arrayBuffer()))], { type: MIME.wav })
          : entry.blob;
        await player.load(playable, { fileName: entry.fileName, download: entry.blob });
        el.genStatus.textContent = `Playing from history: ${entry.fileName}`;
      }),
      button("Reuse", `Put the text and settings of “${short}” back in the editor`, () => {
        applySettings({ text: item.text, voice: item.voice, format: item.format, speed: item.speed });
        saveSettings();
        el.script.focus();
      }),
      button("Delete", `Delete “${short}” from the history`, async () => {
        const next = li.nextElementSibling || li.previousElementSibling;
        await history.remove(item.id);
        await renderHistory();
        const focusTarget = next && el.historyList.querySelector(`li[data-id="${next.dataset.id}"] button`);
        (focusTarget || el.historyClear).focus();
      }),
    );
    li.append(meta, text, actions);
    return li;
  }));
}

el.historyClear.addEventListener("click", async () => {
  if (!window.confirm("Delete every generation kept in this browser?")) return;
  await history.clear();
  await renderHistory();
});

// ---------------------------------------------------------------- start-up

let firstInit = true;

async function init() {
  const saved = loadSettings();
  if (firstInit) {
    firstInit = false;
    applySettings(saved);
    renderHistory();
  }
  el.serverState.textContent = "Connecting…";
  delete el.serverState.dataset.state;
  try {
    const [limits, voices] = await Promise.all([getLimits(), getVoices()]);
    state.limits = limits;
    const lo = Number(limits.speed_min) || DEFAULT_LIMITS.speed_min;
    const hi = Number(limits.speed_max) || DEFAULT_LIMITS.speed_max;
    el.speed.min = String(lo);
    el.speed.max = String(hi);
    mixer.setVoices(voices);
    state.voicesLoaded = true;
    const fallback = voices.some((v) => v.id === "af_heart") ? "af_heart" : voices[0]?.id;
    mixer.value = saved.voice || fallback || "";
    if (!mixer.value && fallback) mixer.value = fallback;
    updateCount();
    updateSpeed();
    clearError();
    el.serverState.textContent = `Ready · ${voices.length} voices`;
    el.serverState.dataset.state = "ready";
    document.body.dataset.ready = "true";
  } catch (err) {
    el.serverState.textContent = "Server unavailable";
    el.serverState.dataset.state = "error";
    const keyIssue = needsKey(err);
    showError(`Could not load the voices: ${describe(err)}` + (keyIssue ? "" : " Reload the page to try again."));
  }
}

init();
