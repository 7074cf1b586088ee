// Player bar: an <audio> element with its own controls, a waveform to see and seek, the time, and a
// download link. MP3 plays while it streams in (Media Source Extensions); anything else, or a browser
// without MSE for the type, plays from a Blob once the response is complete.

import { decodeAudio, computePeaks, drawWaveform } from "./waveform.js";
import { formatTime } from "./util.js";

export class Player extends EventTarget {
  constructor({ audio, playButton, canvas, note, current, total, download }) {
    super();
    Object.assign(this, { audio, playButton, canvas, note, current, total, download });
    this.peaks = null;
    this.decodedDuration = NaN;
    this.urls = [];
    this.generation = 0;
    this.raf = 0;

    playButton.addEventListener("click", () => this.toggle());
    for (const ev of ["play", "pause", "ended", "timeupdate", "durationchange", "loadedmetadata", "emptied"]) {
      audio.addEventListener(ev, () => this.refresh());
    }
    audio.addEventListener("play", () => this.animate());
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect();
      this.seekFraction((e.clientX - r.left) / r.width);
    });
    canvas.addEventListener("keydown", (e) => this.onKey(e));
    new ResizeObserver(() => this.redraw()).observe(canvas);
    download.addEventListener("click", (e) => {
      if (download.getAttribute("aria-disabled") === "true") e.preventDefault();
    });
  }

  get duration() {
    const d = this.audio.duration;
    if (Number.isFinite(d) && d > 0) return d;
    return Number.isFinite(this.decodedDuration) ? this.decodedDuration : 0;
  }

  onKey(e) {
    const d = this.duration;
    const t = this.audio.currentTime;
    const moves = { ArrowLeft: t - 5, ArrowRight: t + 5, ArrowDown: t - 5, ArrowUp: t + 5, Home: 0, End: d,
      PageDown: t - 30, PageUp: t + 30 };
    if (e.key in moves) {
      e.preventDefault();
      if (d) this.audio.currentTime = Math.max(0, Math.min(d, moves[e.key]));
    } else if (e.key === " " || e.key === "Enter" || e.key === "k") {
      e.preventDefault();
      this.toggle();
    }
  }

  seekFraction(f) {
    const d = this.duration;
    if (!d) return;
    this.audio.currentTime = Math.max(0, Math.min(1, f)) * d;
    this.redraw();
  }

  async toggle() {
    if (!this.audio.src) return;
    if (this.audio.paused) await this.play();
    else this.audio.pause();
  }

  async play() {
    try {
      if (this.audio.ended) this.audio.currentTime = 0;
      await this.audio.play();
    } catch (err) {
      if (err.name === "NotAllowedError") this.note.textContent = "Press play to listen";
      else if (err.name !== "AbortError") throw err;
    }
  }

  track(url) {
    this.urls.push(url);
    return url;
  }

  /** Stop, forget the current audio and clear the waveform. */
  reset(message = "No audio yet") {
    this.generation += 1;
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load();
    for (const u of this.urls) URL.revokeObjectURL(u);
    this.urls = [];
    this.peaks = null;
    this.decodedDuration = NaN;
    this.note.textContent = message;
    this.note.hidden = false;
    this.setDownload(null);
    this.redraw();
    this.refresh();
  }

  setDownload(blob, fileName) {
    const a = this.download;
    if (!blob) {
      a.href = "#";
      a.removeAttribute("download");
      a.setAttribute("aria-disabled", "true");
      a.tabIndex = -1;
      a.removeAttribute("title");
      return;
    }
    a.href = this.track(URL.createObjectURL(blob));
    a.download = fileName;
    a.title = `Download ${fileName}`;
    a.setAttribute("aria-disabled", "false");
    a.tabIndex = 0;
  }

  /**
   * Begin playing a response that is still arriving. Returns a sink: push(Uint8Array) for each chunk,
   * then finish() (resolves with the complete Blob once it is in the player) or abort().
   */
  stream({ mime, fileName, autoplay = true }) {
    this.reset("Receiving audio…");
    const gen = this.generation;
    const chunks = [];
    const useMse = window.MediaSource && MediaSource.isTypeSupported(mime) && mime === "audio/mpeg";
    let sb = null;
    let ms = null;
    let mseFailed = !useMse;
    const queue = [];
    let started = false;
    let waiters = [];
    const idle = () => mseFailed || !sb || (!sb.updating && queue.length === 0);
    const wake = () => {
      if (!idle()) return;
      const w = waiters;
      waiters = [];
      w.forEach((f) => f());
    };
    const pump = () => {
      if (mseFailed || !sb || sb.updating || !queue.length || ms.readyState !== "open") return wake();
      try {
        sb.appendBuffer(queue.shift());
      } catch (err) {
        console.warn("MSE append failed; playing once complete", err);
        mseFailed = true;
        queue.length = 0;
        wake();
      }
    };

    if (useMse) {
      ms = new MediaSource();
      this.audio.src = this.track(URL.createObjectURL(ms));
      ms.addEventListener("sourceopen", () => {
        if (gen !== this.generation) return;
        try {
          sb = ms.addSourceBuffer(mime);
        } catch (err) {
          mseFailed = true;
          wake();
          return;
        }
        sb.addEventListener("updateend", () => {
          if (gen !== this.generation) return;
          const buffered = sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : 0;
          this.refresh();
          if (!started && autoplay && buffered > 0.25) {
            started = true;
            this.note.hidden = true;
            this.play();
          }
          pump();
        });
        sb.addEventListener("error", () => {
          mseFailed = true;
          wake();
        });
        pump();
      }, { once: true });
    }

    return {
      usesMse: !mseFailed,
      streamedSeconds: () => (sb && sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : 0),
      push: (chunk) => {
        if (gen !== this.generation) return;
        chunks.push(chunk);
        if (!mseFailed) {
          queue.push(chunk);
          pump();
        }
      },
      finish: async () => {
        const blob = new Blob(chunks, { type: mime });
        if (gen !== this.generation) return blob;
        if (!mseFailed && sb) {
          await new Promise((resolve) => {
            waiters.push(resolve);
            pump();
            wake();
          });
        }
        if (gen !== this.generation) return blob;
        if (!mseFailed && sb && ms.readyState === "open") {
          ms.endOfStream();
          if (!started && autoplay) {
            started = true;
            this.play();
          }
          this.note.hidden = true;
        } else {
          await this.show(blob, { autoplay, keepGeneration: true });
        }
        this.setDownload(blob, fileName);
        await this.drawFrom(blob, gen);
        return blob;
      },
      abort: () => {
        if (gen === this.generation) this.reset("Cancelled");
      },
    };
  }

  /** Load a complete Blob (a finished response or a history entry). */
  async load(blob, { fileName, autoplay = true, download = blob } = {}) {
    this.reset("Loading…");
    const gen = this.generation;
    await this.show(blob, { autoplay, keepGeneration: true });
    this.setDownload(download, fileName);
    await this.drawFrom(blob, gen);
  }

  async show(blob, { autoplay }) {
    this.audio.src = this.track(URL.createObjectURL(blob));
    this.note.hidden = true;
    if (autoplay) await this.play();
    else this.audio.load();
  }

  async drawFrom(blob, gen) {
    try {
      const buffer = await decodeAudio(blob);
      if (gen !== this.generation) return;
      this.peaks = computePeaks(buffer);
      this.decodedDuration = buffer.duration;
      this.note.hidden = true;
    } catch (err) {
      if (gen !== this.generation) return;
      console.warn("could not decode audio for the waveform", err);
      this.note.textContent = "Waveform unavailable";
      this.note.hidden = false;
    }
    this.redraw();
    this.refresh();
    this.dispatchEvent(new Event("waveform"));
  }

  redraw() {
    const d = this.duration;
    drawWaveform(this.canvas, this.peaks, d ? this.audio.currentTime / d : 0);
  }

  animate() {
    cancelAnimationFrame(this.raf);
    const step = () => {
      this.redraw();
      this.current.textContent = formatTime(this.audio.currentTime);
      if (!this.audio.paused && !this.audio.ended) this.raf = requestAnimationFrame(step);
    };
    this.raf = requestAnimationFrame(step);
  }

  refresh() {
    const a = this.audio;
    const d = this.duration;
    const hasAudio = Boolean(a.getAttribute("src"));
    this.playButton.disabled = !hasAudio;
    const playing = hasAudio && !a.paused && !a.ended;
    this.playButton.setAttribute("aria-label", playing ? "Pause" : "Play");
    this.playButton.querySelector(".play-icon").textContent = playing ? "❚❚" : "▶";
    this.current.textContent = formatTime(a.currentTime);
    this.total.textContent = formatTime(d);
    this.canvas.setAttribute("aria-valuemax", String(Math.round(d)));
    this.canvas.setAttribute("aria-valuenow", String(Math.round(a.currentTime)));
    this.canvas.setAttribute("aria-valuetext", `${formatTime(a.currentTime)} of ${formatTime(d)}`);
    if (!playing) this.redraw();
  }
}
