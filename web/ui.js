// Drawing helpers of the page: line charts, bars, the report table, the confusion-matrix heat
// map, image thumbnails and the drawing pad. No state of their own; app.js calls them.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

// Line chart: series = [{ points: [[x, y]], color, max? }], x from 0 to xMax.
export function lineChart(canvas, series, xMax, { xLabel = '', yLabel = '', dots = false } = {}) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  const pad = 34;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = '#8888';
  ctx.lineWidth = 1;
  ctx.strokeRect(pad, 8, w - pad - 8, h - pad - 8);
  ctx.fillStyle = '#888';
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillText(yLabel, 4, 20);
  ctx.fillText(xLabel, w - 8 - ctx.measureText(xLabel).width, h - 8);
  if (!xMax) return;
  const x = (v) => pad + ((w - pad - 8) * v) / xMax;
  for (const s of series) {
    if (!s.points.length) continue;
    const max = s.max ?? Math.max(1e-9, ...s.points.map(([, v]) => v));
    const y = (v) => 8 + (h - pad - 8) * (1 - Math.min(v, max) / max);
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.points.forEach(([px, py], i) => (i ? ctx.lineTo(x(px), y(py)) : ctx.moveTo(x(px), y(py))));
    ctx.stroke();
    if (dots) {
      for (const [px, py] of s.points) {
        ctx.beginPath();
        ctx.arc(x(px), y(py), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    if (s.label) ctx.fillText(`${s.label} ${max.toFixed(2)}`, pad + 4, 22 + 14 * series.indexOf(s));
  }
}

// Horizontal bars: items = [[name, value, text]], value in [0, 1].
export function bars(container, items, highlight = -1) {
  container.replaceChildren();
  items.forEach(([name, value, text], i) => {
    const fill = el('span', { class: 'fill' });
    fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`;
    container.append(
      el('div', { class: i === highlight ? 'bar best' : 'bar' },
        el('span', { class: 'name', text: name }),
        el('span', { class: 'track' }, fill),
        el('span', { class: 'value', text })));
  });
}

// A thumbnail of a channel-major image row with values in [0, 1] (grayscale or RGB).
export function thumbnail(values, [c, h, w], caption) {
  const canvas = el('canvas', { width: String(w), height: String(h), class: 'thumb' });
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(w, h);
  const plane = h * w;
  for (let i = 0; i < plane; i++) {
    const px = (ch) => Math.round(255 * Math.max(0, Math.min(1, values[ch * plane + i])));
    const [r, g, b] = c === 3 ? [px(0), px(1), px(2)] : [px(0), px(0), px(0)];
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  return el('figure', { class: 'sample' }, canvas, el('figcaption', { text: caption }));
}

const pct = (v) => v.toFixed(2);

// The per-class table in scikit-learn's columns, then macro and weighted averages.
export function reportTable(table, report) {
  const caption = table.querySelector('caption');
  table.replaceChildren(caption);
  const head = el('tr', {}, ...['class', 'precision', 'recall', 'F1', 'support'].map((t) => el('th', { scope: 'col', text: t })));
  table.append(el('thead', {}, head));
  const body = el('tbody');
  const row = (name, [p, r, f], support) =>
    el('tr', {}, el('th', { scope: 'row', text: name }), el('td', { text: pct(p) }), el('td', { text: pct(r) }), el('td', { text: pct(f) }), el('td', { text: String(support) }));
  for (const c of report.classes) body.append(row(c.name, [c.precision, c.recall, c.f1], c.support));
  body.append(row('macro avg', report.macro_avg, report.total));
  body.append(row('weighted avg', report.weighted_avg, report.total));
  table.append(body);
}

// Confusion matrix as a table whose cells are shaded by their share of the row.
export function heatMap(table, names, matrix) {
  const caption = table.querySelector('caption');
  table.replaceChildren(caption);
  table.append(el('thead', {}, el('tr', {}, el('th', { text: '' }), ...names.map((n) => el('th', { scope: 'col', text: n })))));
  const body = el('tbody');
  matrix.forEach((counts, i) => {
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    const tr = el('tr', {}, el('th', { scope: 'row', text: names[i] }));
    counts.forEach((n, j) => {
      const td = el('td', { text: String(n), title: `true ${names[i]}, predicted ${names[j]}: ${n}` });
      const share = n / total;
      td.style.backgroundColor = `rgba(${i === j ? '37, 99, 235' : '194, 65, 12'}, ${(0.08 + 0.85 * share).toFixed(3)})`;
      if (share > 0.5) td.classList.add('strong');
      tr.append(td);
    });
    body.append(tr);
  });
  table.append(body);
}

// A drawing pad: white strokes on black, calls onStroke after each stroke.
export function drawingPad(canvas, onStroke) {
  const ctx = canvas.getContext('2d');
  const clear = () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  let drawing = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  canvas.addEventListener('pointerdown', (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = canvas.width / 10;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(...at(e));
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    ctx.lineTo(...at(e));
    ctx.stroke();
  });
  const end = () => {
    if (drawing) {
      drawing = false;
      onStroke();
    }
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  return { clear };
}
