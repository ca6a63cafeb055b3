// Stored runs: autosaves of classifier runs kept in this origin's IndexedDB (never sent
// anywhere), so a reload, a crashed worker or a lost GPU does not lose a run. One record per run
// in `runs` (the latest autosave's bytes, what it holds, the charts drawn up to it) and the
// training data it needs in `data` (written once per run), so a run resumes with one click.

const DB_NAME = 'burnish-runs';
const VERSION = 1;

let opening = null;
function db() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, VERSION);
      request.onupgradeneeded = () => {
        const d = request.result;
        if (!d.objectStoreNames.contains('runs')) d.createObjectStore('runs', { keyPath: 'id' });
        if (!d.objectStoreNames.contains('data')) d.createObjectStore('data', { keyPath: 'id' });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error('the run store is open in an older tab; close it and reload'));
    });
    opening.catch(() => { opening = null; });
  }
  return opening;
}

// Run `work(stores)` in one transaction; resolves with its result once the transaction commits.
async function transaction(names, mode, work) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction(names, mode);
    const stores = Object.fromEntries(names.map((n) => [n, tx.objectStore(n)]));
    let result;
    Promise.resolve(work(stores)).then((r) => { result = r; }, reject);
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('the run store refused the write (storage full?)'));
  });
}

const request = (r) => new Promise((resolve, reject) => {
  r.onsuccess = () => resolve(r.result);
  r.onerror = () => reject(r.error);
});

const bytesOf = (loads) => loads.reduce((n, l) => n + l.files.reduce((m, f) => m + (f.blob?.size ?? f.bytes.byteLength), 0), 0);

// Keep the latest autosave of run `id`; `loads` (the data, [{role, request, files: [{path,
// blob}]}]) is written
// with the first one.
export async function storeAutosave(id, { name, info, checkpoint, history, loads }) {
  return transaction(['runs', 'data'], 'readwrite', async ({ runs, data }) => {
    const old = await request(runs.get(id));
    const now = Date.now();
    runs.put({
      id, name, info, checkpoint, history,
      created: old?.created ?? now, updated: now,
      size: checkpoint.byteLength, dataSize: old?.dataSize ?? bytesOf(loads),
    });
    if (!old) data.put({ id, loads });
  });
}

// Every stored run, newest first, without the bytes.
export async function listRuns() {
  const all = await transaction(['runs'], 'readonly', ({ runs }) => request(runs.getAll()));
  return all
    .map(({ checkpoint, ...meta }) => meta)
    .sort((a, b) => b.updated - a.updated);
}

// A run's autosave and data.
export async function loadRun(id) {
  return transaction(['runs', 'data'], 'readonly', async ({ runs, data }) => {
    const run = await request(runs.get(id));
    const stored = await request(data.get(id));
    if (!run || !stored) throw new Error(`the stored run ${id} is gone (deleted in another tab?)`);
    return { run, loads: stored.loads };
  });
}

export async function deleteRun(id) {
  return transaction(['runs', 'data'], 'readwrite', ({ runs, data }) => {
    runs.delete(id);
    data.delete(id);
  });
}

// What this origin stores, as the browser counts it (usage and quota in bytes), when it says.
export async function usage() {
  if (!navigator.storage?.estimate) return null;
  try {
    return await navigator.storage.estimate();
  } catch {
    return null;
  }
}
