// History of the last generations, kept in this browser's IndexedDB (audio Blobs included).

const DB_NAME = "kokoro-studio";
const STORE = "generations";
export const HISTORY_LIMIT = 20;

function promisify(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
  });
}

export class History {
  constructor() {
    this.db = null;
  }

  async open() {
    if (this.db) return this.db;
    if (!window.indexedDB) throw new Error("this browser has no IndexedDB");
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
      store.createIndex("createdAt", "createdAt");
    };
    this.db = await promisify(req);
    return this.db;
  }

  /** Add an entry ({createdAt, text, voice, format, speed, duration, blob, fileName}); keep the newest 20. */
  async add(entry) {
    const db = await this.open();
    const tx = db.transaction(STORE, "readwrite");
    const store = tx.objectStore(STORE);
    const id = await promisify(store.add(entry));
    const keys = await promisify(store.getAllKeys());
    keys.sort((a, b) => a - b);
    for (const old of keys.slice(0, Math.max(0, keys.length - HISTORY_LIMIT))) store.delete(old);
    await done(tx);
    return id;
  }

  /** Newest first. */
  async list() {
    const db = await this.open();
    const items = await promisify(db.transaction(STORE).objectStore(STORE).getAll());
    return items.sort((a, b) => b.id - a.id);
  }

  async get(id) {
    const db = await this.open();
    return promisify(db.transaction(STORE).objectStore(STORE).get(id));
  }

  async remove(id) {
    const db = await this.open();
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).delete(id);
    await done(tx);
  }

  async clear() {
    const db = await this.open();
    const tx = db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).clear();
    await done(tx);
  }
}
