// The offline cache: once the page has loaded, it reopens and trains with no network. The app
// (page, scripts, wasm) and the small demo data are stored when the service worker installs;
// anything else the page fetches later from its own origin (the MiniLM demo, say) is stored as it
// passes. Requests go to the network first, so an updated build is picked up when online, and
// fall back to the stored copy when offline. Nothing here talks to any other origin.

const CACHE = 'burnish-v1';
const APP = [
  './', './index.html', './app.js', './ui.js', './text.js', './lm.js', './runs.js', './burnish.js', './burnish-trainer.js', './style.css',
  './burnish-web.js', './burnish-web_bg.wasm', './burnish-web_loader.js',
  './digits.csv.gz', './tinyshakespeare.txt', './movie_sentiment.csv',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(APP)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok && response.type === 'basic') {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(request, copy)));
        }
        return response;
      })
      .catch(() => caches.match(request, { ignoreSearch: true }).then((hit) => hit || Response.error())),
  );
});
