// Waveform: peaks from audio decoded with Web Audio (decodeAudioData), drawn on a canvas with the
// played part highlighted.

const BUCKETS = 2048;

/** Decode a Blob of encoded audio; resolves with an AudioBuffer. */
export async function decodeAudio(blob) {
  const data = await blob.arrayBuffer();
  const Ctx = window.OfflineAudioContext || window.webkitOfflineAudioContext;
  // An offline context needs no user gesture and never touches the audio device.
  const ctx = new Ctx(1, 1, 24000);
  return await ctx.decodeAudioData(data);
}

/** Max |sample| per bucket across channels, normalised so the loudest bucket is 1. */
export function computePeaks(buffer, buckets = BUCKETS) {
  const n = buffer.length;
  const out = new Float32Array(Math.max(1, Math.min(buckets, n)));
  const per = n / out.length;
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let b = 0; b < out.length; b++) {
      const start = Math.floor(b * per);
      const end = Math.min(n, Math.floor((b + 1) * per));
      let m = out[b];
      for (let i = start; i < end; i++) {
        const v = data[i] < 0 ? -data[i] : data[i];
        if (v > m) m = v;
      }
      out[b] = m;
    }
  }
  let max = 0;
  for (const v of out) if (v > max) max = v;
  if (max > 0) for (let b = 0; b < out.length; b++) out[b] /= max;
  return out;
}

function cssColor(el, name, fallback) {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

/** Draw `peaks` on `canvas`; `progress` in [0, 1] is the played fraction. */
export function drawWaveform(canvas, peaks, progress = 0) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  if (!peaks || !peaks.length) {
    delete canvas.dataset.drawn;
    return;
  }
  const played = cssColor(canvas, "--wave-played", "#6d4aff");
  const rest = cssColor(canvas, "--wave-rest", "#9aa0b4");
  const bar = Math.max(1, Math.round(2 * dpr));
  const gap = Math.max(1, Math.round(dpr));
  const step = bar + gap;
  const cols = Math.floor(w / step);
  const mid = h / 2;
  const cut = progress * w;
  for (let x = 0; x < cols; x++) {
    const from = Math.floor((x / cols) * peaks.length);
    const to = Math.max(from + 1, Math.floor(((x + 1) / cols) * peaks.length));
    let m = 0;
    for (let i = from; i < to && i < peaks.length; i++) if (peaks[i] > m) m = peaks[i];
    const half = Math.max(dpr, m * (mid - dpr));
    ctx.fillStyle = x * step < cut ? played : rest;
    ctx.fillRect(x * step, mid - half, bar, half * 2);
  }
  canvas.dataset.drawn = "true";
}
