// Small pure helpers shared by the studio modules.

/** Characters as the server counts them: code points of the stripped text. */
export function countChars(text) {
  return [...text.trim()].length;
}

export function countWords(text) {
  const t = text.trim();
  return t ? t.split(/\s+/u).length : 0;
}

/** 75.3 -> "1:15"; NaN/Infinity -> "0:00". */
export function formatTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function slug(text, maxWords = 5) {
  return text
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, " ")
    .trim()
    .split(" ")
    .filter(Boolean)
    .slice(0, maxWords)
    .join("-")
    .slice(0, 40);
}

/** "af_bella(60)+af_sky(40)" -> "af_bella60-af_sky40" (safe in file names). */
function voiceSlug(voice) {
  return voice.replace(/\((\d+(?:\.\d+)?)\)/g, "$1").replace(/\+/g, "-").replace(/[^A-Za-z0-9_.-]/g, "");
}

function stamp(date) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}${p(date.getMonth() + 1)}${p(date.getDate())}-` +
    `${p(date.getHours())}${p(date.getMinutes())}${p(date.getSeconds())}`;
}

/** kokoro_af_heart60-af_bella40_hello-world_20261122-001500.mp3 */
export function fileName({ text, voice, format, createdAt }) {
  const parts = ["kokoro", voiceSlug(voice) || "voice", slug(text) || "speech", stamp(new Date(createdAt))];
  return `${parts.join("_")}.${format}`;
}

export const MIME = {
  mp3: "audio/mpeg", opus: "audio/ogg", aac: "audio/aac", flac: "audio/flac", wav: "audio/wav", pcm: "audio/pcm",
};

/** Raw PCM (s16le, mono) with a WAV header in front, so that a browser can play it. */
export function pcmToWav(pcm, rate = 24000) {
  const out = new Uint8Array(44 + pcm.length);
  const dv = new DataView(out.buffer);
  const put = (o, text) => [...text].forEach((c, i) => (out[o + i] = c.charCodeAt(0)));
  put(0, "RIFF");
  dv.setUint32(4, 36 + pcm.length, true);
  put(8, "WAVEfmt ");
  dv.setUint32(16, 16, true);
  dv.setUint16(20, 1, true);
  dv.setUint16(22, 1, true);
  dv.setUint32(24, rate, true);
  dv.setUint32(28, rate * 2, true);
  dv.setUint16(32, 2, true);
  dv.setUint16(34, 16, true);
  put(36, "data");
  dv.setUint32(40, pcm.length, true);
  out.set(pcm, 44);
  return out;
}

/** Rough spoken length of a text, used only to estimate progress. */
export function estimateSeconds(text, speed) {
  return Math.max(1, countChars(text) / 14.5 / (speed || 1));
}

/**
 * A streamed WAV carries placeholder sizes (its length was unknown when the header was sent);
 * write the real RIFF and data sizes so every player and decoder accepts the finished file.
 */
export function fixWavHeader(bytes) {
  if (bytes.length < 44) return bytes;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (o) => String.fromCharCode(bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]);
  if (tag(0) !== "RIFF" || tag(8) !== "WAVE") return bytes;
  let off = 12;
  while (off + 8 <= bytes.length) {
    const id = tag(off);
    if (id === "data") {
      dv.setUint32(off + 4, bytes.length - off - 8, true);
      dv.setUint32(4, bytes.length - 8, true);
      return bytes;
    }
    const size = dv.getUint32(off + 4, true);
    if (size === 0xffffffff) return bytes;
    off += 8 + size + (size & 1);
  }
  return bytes;
}

/** Bytes per second of a WAV stream from its header, or 0 if unknown. */
export function wavByteRate(bytes) {
  if (bytes.length < 32) return 0;
  const tag = String.fromCharCode(...bytes.subarray(0, 4));
  if (tag !== "RIFF") return 0;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(28, true);
}

export function concatBytes(chunks, total) {
  const out = new Uint8Array(total ?? chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
