// Voice mixer: the "Voice" picker chooses the voice that speaks (and always shows it); "Blend in" adds
// other voices on request, one percent slider per voice in the mix (the sliders always add up to 100), and
// the resulting mix string, e.g. "af_bella(60)+af_sky(40)".

const LANGUAGE_NAMES = { "en-us": "American English", "en-gb": "British English" };
const GROUP_ORDER = ["en-us|female", "en-us|male", "en-gb|female", "en-gb|male"];
const PART = /^\s*([A-Za-z0-9_-]+)\s*(?:\(\s*(\d+(?:\.\d+)?)\s*\))?\s*$/;

export function groupLabel(language, gender) {
  const lang = LANGUAGE_NAMES[language] ?? language;
  return gender && gender !== "other" ? `${lang} · ${gender.charAt(0).toUpperCase()}${gender.slice(1)}` : lang;
}

/** Integers that add up to `total`, proportional to `weights` (largest remainder). */
export function apportion(weights, total = 100) {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (!weights.length) return [];
  if (sum <= 0) return apportion(weights.map(() => 1), total);
  const exact = weights.map((w) => (w / sum) * total);
  const out = exact.map(Math.floor);
  let rest = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i]).sort((a, b) => b[0] - a[0]);
  for (let k = 0; rest > 0; k = (k + 1) % order.length, rest--) out[order[k][1]] += 1;
  return out;
}

/** "a(2)+b(1)" -> [{id: "a", weight: 2}, {id: "b", weight: 1}], or null if it is not a mix string. */
export function parseMix(text) {
  const parts = text.split("+");
  const out = [];
  for (const part of parts) {
    const m = PART.exec(part);
    if (!m) return null;
    out.push({ id: m[1], weight: m[2] === undefined ? 1 : Number(m[2]) });
  }
  return out.length ? out : null;
}

export class Mixer extends EventTarget {
  constructor({ picker, blendPicker, addButton, list, mixInput, copyButton, status }) {
    super();
    Object.assign(this, { picker, blendPicker, addButton, list, mixInput, copyButton, status });
    this.voices = new Map();
    this.entries = []; // [{id, pct}]
    this.custom = null; // a typed mix string the sliders cannot show (sent as typed)
    picker.addEventListener("change", () => this.use(picker.value));
    addButton.addEventListener("click", () => this.add(blendPicker.value));
    blendPicker.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.add(blendPicker.value);
      }
    });
    mixInput.addEventListener("change", () => this.applyTyped(mixInput.value));
    mixInput.addEventListener("blur", () => {
      if (!mixInput.value.trim()) mixInput.value = this.value;
    });
    mixInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.applyTyped(mixInput.value);
    });
    copyButton.addEventListener("click", () => this.copy());
  }

  setVoices(voices) {
    this.voices = new Map(voices.map((v) => [v.id, v]));
    const groups = new Map();
    for (const v of voices) {
      const key = `${v.language}|${v.gender}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(v);
    }
    const rank = (k) => (GROUP_ORDER.includes(k) ? GROUP_ORDER.indexOf(k) : GROUP_ORDER.length);
    const keys = [...groups.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    const options = () => keys.map((key) => {
      const [language, gender] = key.split("|");
      const group = document.createElement("optgroup");
      group.label = groupLabel(language, gender);
      const members = groups.get(key).sort((a, b) => a.name.localeCompare(b.name));
      for (const v of members) group.append(new Option(`${v.name} (${v.id})`, v.id));
      return group;
    });
    // The voice picker's first option stands for "several voices" / "a typed mix" (shown only then).
    this.mixOption = new Option("", "", false, false);
    this.mixOption.disabled = true;
    this.picker.replaceChildren(this.mixOption, ...options());
    this.blendPicker.replaceChildren(...options());
    this.entries = this.entries.filter((e) => this.voices.has(e.id));
    this.render();
  }

  label(id) {
    const v = this.voices.get(id);
    return v ? `${v.name} (${groupLabel(v.language, v.gender)})` : id;
  }

  /** The value to send as `voice`. */
  get value() {
    if (this.custom !== null) return this.custom;
    const live = this.entries.filter((e) => e.pct > 0);
    if (live.length === 1) return live[0].id;
    return live.map((e) => `${e.id}(${e.pct})`).join("+");
  }

  set value(text) {
    this.applyTyped(text, { quiet: true });
  }

  /** Speak with this voice alone (the Voice picker). */
  use(id) {
    if (!id || !this.voices.has(id)) return;
    this.custom = null;
    this.entries = [{ id, pct: 100 }];
    this.render();
    this.say(`Speaking with ${this.label(id)}.`);
  }

  /** Blend another voice in (asked for with "Add to mix"): the voices then share the mix equally. */
  add(id) {
    if (!id) return;
    this.custom = null;
    const existing = this.list.querySelector(`input[data-voice="${CSS.escape(id)}"]`);
    if (this.entries.some((e) => e.id === id)) {
      existing?.focus();
      this.say(`${this.label(id)} is already in the mix.`);
      return;
    }
    this.entries.push({ id, pct: 0 });
    const shares = apportion(this.entries.map(() => 1));
    this.entries.forEach((e, i) => (e.pct = shares[i]));
    this.render();
    this.say(`Added ${this.label(id)}; the voices now share the mix equally.`);
  }

  remove(id) {
    const i = this.entries.findIndex((e) => e.id === id);
    if (i < 0) return;
    this.custom = null;
    this.entries.splice(i, 1);
    const shares = apportion(this.entries.map((e) => e.pct));
    this.entries.forEach((e, k) => (e.pct = shares[k]));
    this.render();
    const next = this.list.querySelectorAll("input[type=range]")[Math.min(i, this.entries.length - 1)];
    (next || this.picker).focus();
    this.say(`Removed ${this.label(id)}.`);
  }

  /** Set one voice's share; the others are scaled to fill the rest. */
  setPct(id, pct) {
    const i = this.entries.findIndex((e) => e.id === id);
    if (i < 0) return;
    this.custom = null;
    if (this.entries.length === 1) {
      this.entries[0].pct = 100;
    } else {
      pct = Math.max(0, Math.min(100, Math.round(pct)));
      const others = this.entries.filter((_, k) => k !== i);
      const shares = apportion(others.map((e) => e.pct), 100 - pct);
      others.forEach((e, k) => (e.pct = shares[k]));
      this.entries[i].pct = pct;
    }
    this.update();
  }

  applyTyped(text, { quiet = false } = {}) {
    const parsed = parseMix(text.trim());
    if (parsed && parsed.every((p) => this.voices.has(p.id)) && new Set(parsed.map((p) => p.id)).size === parsed.length) {
      const shares = apportion(parsed.map((p) => p.weight));
      this.entries = parsed.map((p, i) => ({ id: p.id, pct: shares[i] }));
      this.custom = null;
      this.render();
      if (!quiet) this.say("Mix updated.");
    } else if (text.trim()) {
      this.custom = text.trim();
      this.update();
      if (!quiet) this.say("Not a mix of the listed voices: it is sent exactly as typed.");
    } else {
      // Emptied while typing: keep the field empty until it loses focus.
      this.custom = null;
      this.update({ syncInput: false });
    }
  }

  render() {
    const rows = this.entries.map((e) => {
      const li = document.createElement("li");
      li.className = "mix-row";
      const inputId = `mix-${e.id}`;
      const label = document.createElement("label");
      label.htmlFor = inputId;
      label.textContent = this.label(e.id);
      const range = document.createElement("input");
      Object.assign(range, { type: "range", id: inputId, min: 0, max: 100, step: 1, value: e.pct });
      range.dataset.voice = e.id;
      range.addEventListener("input", () => this.setPct(e.id, Number(range.value)));
      const out = document.createElement("output");
      out.htmlFor = inputId;
      out.className = "pct";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "icon-button";
      remove.textContent = "✕";
      remove.setAttribute("aria-label", `Remove ${this.label(e.id)} from the mix`);
      remove.addEventListener("click", () => this.remove(e.id));
      li.append(label, range, out, remove);
      return li;
    });
    this.list.replaceChildren(...rows);
    this.update();
  }

  update({ syncInput = true } = {}) {
    for (const range of this.list.querySelectorAll("input[type=range]")) {
      const e = this.entries.find((x) => x.id === range.dataset.voice);
      if (!e) continue;
      range.value = String(e.pct);
      range.disabled = this.entries.length === 1;
      range.setAttribute("aria-valuetext", `${e.pct} percent`);
      range.parentElement.querySelector("output").textContent = `${e.pct}%`;
      range.parentElement.classList.toggle("muted", e.pct === 0);
    }
    if (syncInput && (document.activeElement !== this.mixInput || this.custom === null)) {
      this.mixInput.value = this.value;
    }
    this.mixInput.classList.toggle("custom", this.custom !== null);
    this.syncPickers();
    this.dispatchEvent(new Event("change"));
  }

  /** The Voice picker shows the voice that speaks, or "Mix of n voices" / "Typed mix"; the blend picker
   * offers a voice that is not in the mix yet. */
  syncPickers() {
    if (!this.mixOption) return;
    const live = this.entries.filter((e) => e.pct > 0);
    if (this.custom === null && live.length === 1) {
      this.mixOption.hidden = true;
      this.picker.value = live[0].id;
    } else {
      this.mixOption.hidden = false;
      this.mixOption.textContent = this.custom !== null ? "Typed mix (see below)" : `Mix of ${live.length} voices`;
      this.picker.value = "";
      this.mixOption.selected = true;
    }
    const inMix = new Set(this.entries.map((e) => e.id));
    if (!this.blendPicker.value || inMix.has(this.blendPicker.value)) {
      const free = [...this.voices.keys()].find((id) => !inMix.has(id));
      if (free) this.blendPicker.value = free;
    }
  }

  say(text) {
    this.status.textContent = text;
  }

  async copy() {
    const text = this.value;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Not a secure context or no permission: select the text and use the legacy command.
      this.mixInput.focus();
      this.mixInput.select();
      if (!document.execCommand?.("copy")) {
        this.say("Copy is blocked here: the mix string is selected, press Ctrl+C.");
        return;
      }
    }
    this.say(`Copied “${text}”.`);
  }
}
