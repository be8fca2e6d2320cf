/* Trainyard dashboard: what every page shares. The /v1 API with the tab's key, the event stream
   read through fetch (EventSource cannot send a key), uPlot charts, formatting and DOM helpers.
   Charts are registered in window.trainyard.charts[name], each with .data (uPlot's aligned data)
   and .metrics (the metric name behind each series), so a test can count points. */
"use strict";

(() => {
  const KEY = "trainyard.key";
  const TERMINAL = new Set(["succeeded", "failed", "cancelled", "pruned"]);
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777",
    "#4b5563", "#65a30d", "#7c3aed", "#0d9488"];
  const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7];
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  /* ---------- DOM ---------- */

  /** An element: h("a", {href, class: "x"}, "text", child, ...). Text is always set as text. */
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function fill(node, ...children) {
    node.replaceChildren();
    for (const child of children.flat()) if (child !== null && child !== undefined && child !== false) node.append(child);
    return node;
  }

  /* ---------- formatting ---------- */

  function fmt(value, digits = 4) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
    const size = Math.abs(value);
    if (size !== 0 && (size < 1e-3 || size >= 1e5)) {
      const [mantissa, exponent] = value.toExponential(Math.max(0, digits - 2)).split("e");
      return `${Number(mantissa)}e${exponent}`;
    }
    return String(Number(value.toPrecision(digits)));
  }

  function ago(iso) {
    if (!iso) return "—";
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return new Date(iso).toLocaleDateString();
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 60) return `${fmt(seconds, 3)} s`;
    return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  }

  /** Short parameter names (`optimizer.lr` → `lr`) unless two keys end alike, as the CLI shows them. */
  function paramNames(keys) {
    const last = Object.fromEntries(keys.map((k) => [k, k.split(/[./]/).filter(Boolean).pop() || k]));
    const counts = {};
    for (const name of Object.values(last)) counts[name] = (counts[name] || 0) + 1;
    return Object.fromEntries(keys.map((k) => [k, counts[last[k]] === 1 ? last[k] : k]));
  }

  function paramLabel(params, names) {
    return Object.entries(params || {}).map(([k, v]) => `${names[k] || k}=${fmt(v)}`).join(" ");
  }

  function statusBadge(status) {
    return h("span", { class: `status status-${status}`, "data-status": status }, status);
  }

  function verdictBadges(verdicts) {
    return (verdicts || []).map((v) =>
      h("span", { class: `badge sev-${v.severity}`, title: v.message || v.code, "data-verdict": v.code }, v.code));
  }

  /** The run's best validation value and what it is, from its summary alone (no metrics request). */
  function bestOf(run) {
    const s = run.summary;
    if (!s) return null;
    if (run.kind === "sweep" && s.best) return { metric: s.metric, value: s.best[s.metric], note: "best trial" };
    if (run.kind === "kfold" && s.mean) {
      return { metric: "val_loss", value: s.mean.val_loss, note: `mean ± ${fmt(s.std?.val_loss, 2)} over folds` };
    }
    for (const metric of ["val_loss", "val_accuracy"]) {
      if (s[`best_${metric}`] !== undefined) return { metric, value: s[`best_${metric}`], note: `best, epoch ${s.best_epoch}` };
    }
    if (s.val_loss !== undefined) return { metric: "val_loss", value: s.val_loss, note: "last epoch" };
    return null;
  }

  /* ---------- the API, with the tab's key ---------- */

  class ApiError extends Error {
    constructor(status, problem) {
      const detail = typeof problem === "object" && problem ? problem.detail || problem.title : problem;
      const errors = (problem && problem.errors) || [];
      super([`${status}: ${detail || "request failed"}`, ...errors.map((e) => `${e.pointer}: ${e.message}`)].join("\n"));
      this.status = status;
      this.problem = problem;
    }
  }

  let asking = null; // one key form for every request that got a 401

  function askKey(rejected) {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const input = h("input", { type: "password", id: "api-key", name: "key", placeholder: "ty_…", autocomplete: "off",
        required: true });
      const form = h("form", { id: "key-form", class: "key-form" },
        h("h2", {}, "API key"),
        h("p", {}, "This Trainyard needs an API key (TRAINYARD_AUTH=api_key). It is kept for this tab only."),
        rejected ? h("p", { class: "error" }, "That key was not accepted.") : null,
        h("div", { class: "row" }, input, h("button", { type: "submit", class: "primary" }, "Use key")));
      const dialog = h("div", { class: "overlay" }, form);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        dialog.remove();
        asking = null;
        resolve();
      });
      document.body.append(dialog);
      input.focus();
    });
    return asking;
  }

  function headers(extra = {}) {
    const key = sessionStorage.getItem(KEY);
    return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
  }

  async function unauthorized() {
    const rejected = sessionStorage.getItem(KEY) !== null;
    sessionStorage.removeItem(KEY);
    await askKey(rejected);
  }

  /** A /v1 request: JSON in and out; a 401 asks for the key and retries; other errors throw ApiError. */
  async function api(path, { method = "GET", body, signal } = {}) {
    for (;;) {
      const init = { method, signal, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
      if (body !== undefined) init.body = JSON.stringify(body);
      const response = await fetch(path, init);
      if (response.status === 401) {
        await unauthorized();
        continue;
      }
      const type = response.headers.get("content-type") || "";
      const data = type.includes("json") ? await response.json() : await response.text();
      if (!response.ok) throw new ApiError(response.status, data);
      return data;
    }
  }

  /** Every page of a paginated list (`items`, `next_cursor`). */
  async function all(path) {
    const items = [];
    let cursor = null;
    let first = null;
    do {
      const sep = path.includes("?") ? "&" : "?";
      const page = await api(`${path}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      first = first || page;
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return { ...first, items };
  }

  /** A run's metrics, downsampled by the API where it can (max_points), in full where it cannot. */
  async function metrics(runId, names = [], maxPoints = 2000) {
    const query = names.map((n) => `names=${encodeURIComponent(n)}`);
    const base = `/v1/runs/${encodeURIComponent(runId)}/metrics`;
    try {
      return await api(`${base}?${[...query, `max_points=${maxPoints}`].join("&")}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 422) throw error;
      return api(`${base}?${query.join("&")}`);
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Read a Server-Sent Events stream with fetch (so the key goes along), calling onEvent(type, data).
      Reconnects with Last-Event-ID after a network error; returns when the server ends the stream. */
  async function follow(path, onEvent, { signal } = {}) {
    let lastId = null;
    for (;;) {
      try {
        const response = await fetch(path, {
          signal,
          headers: headers({ Accept: "text/event-stream", ...(lastId ? { "Last-Event-ID": lastId } : {}) }),
        });
        if (response.status === 401) {
          await unauthorized();
          continue;
        }
        if (!response.ok) throw new ApiError(response.status, await response.text());
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buffer += value.replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let type = "message";
            const data = [];
            for (const line of block.split("\n")) {
              const colon = line.indexOf(":");
              if (colon === 0) continue; // a comment
              const field = colon < 0 ? line : line.slice(0, colon);
              const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "event") type = text;
              else if (field === "data") data.push(text);
              else if (field === "id") lastId = text;
            }
            if (data.length) onEvent(type, JSON.parse(data.join("\n")));
          }
        }
      } catch (error) {
        if (signal?.aborted || error instanceof ApiError) throw error;
        await sleep(1000);
      }
    }
  }

  /* ---------- charts ---------- */

  const charts = {};

  function color(i) {
    return PALETTE[i % PALETTE.length];
  }

  /** Colour i of n along viridis (first layer dark, last layer bright): depth reads as colour. */
  function ramp(i, n) {
    const t = n <= 1 ? 0 : (i / (n - 1)) * 0.92;
    const at = t * (VIRIDIS.length - 1);
    const lo = Math.floor(at);
    const hi = Math.min(lo + 1, VIRIDIS.length - 1);
    const mix = VIRIDIS[lo].map((c, k) => Math.round(c + (VIRIDIS[hi][k] - c) * (at - lo)));
    return `rgb(${mix.join(",")})`;
  }

  /** Aligned uPlot data from {label: [xs, ys]} tables: one x axis, undefined where a series has no point. */
  function align(tables) {
    if (!tables.length) return [[]];
    return uPlot.join(tables.map(([xs, ys]) => [xs, ys]));
  }

  /** On a log axis, ticks and grid lines at powers of ten only, where there are at least two. */
  function logFilter(u, splits) {
    const whole = splits.map((v) => (v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9 ? v : null));
    return whole.filter((v) => v !== null).length >= 2 ? whole : splits;
  }

  function axisLines(log) {
    const grid = { stroke: "#eef2f7", width: 1 };
    return log ? { filter: logFilter, grid: { ...grid, filter: logFilter }, ticks: { filter: logFilter } } : { grid };
  }

  /** Tick labels: as many decimals as the tick spacing needs on a linear axis (2.305, 2.31), short
      exponents for tiny or huge values and on log axes. */
  function axisValues(u, values, axis, space, incr) {
    const log = u.scales[u.axes[axis].scale].distr === 3;
    return values.map((v) => {
      if (v === null || v === undefined) return "";
      const size = Math.abs(v);
      if (log || !incr || (size !== 0 && (size < 1e-3 || size >= 1e5))) return fmt(v, 3);
      return v.toFixed(Math.max(0, Math.min(8, -Math.floor(Math.log10(incr) + 1e-9))));
    });
  }

  /** A chart card: title, log-scale toggle, a uPlot that is rebuilt when its series change. */
  class Chart {
    /** options: title, xLabel, log (start on a log y scale), points (dots only: a scatter), colors
        (fn i,n → colour), refLine (a dashed horizontal line at this y), xLog (log x scale), integerX
        (ticks on whole numbers: epochs, steps), height, empty (the text while there are no points). */
    constructor(name, host, options = {}) {
      this.name = name;
      this.options = options;
      this.log = Boolean(options.log);
      this.metrics = [];
      this.labels = [];
      this.tables = [];
      this.u = null;
      const toggle = h("input", { type: "checkbox", class: "log-toggle", checked: this.log,
        onchange: (event) => { this.log = event.target.checked; this.rebuild(); } });
      this.plot = h("div", { class: "plot" });
      this.empty = h("div", { class: "empty" }, options.empty || "no points yet");
      this.card = h("div", { class: "card chart", "data-chart": name },
        h("div", { class: "chart-head" }, h("h3", {}, options.title || name),
          h("label", { class: "toggle", title: "logarithmic y axis" }, toggle, "log")),
        this.empty, this.plot);
      host.append(this.card);
      charts[name] = this;
    }

    get data() {
      return this.u ? this.u.data : [[]];
    }

    /** Replace the series: [{metric, label, x: [...], y: [...]}]. Rebuilds uPlot only when they change. */
    set(series) {
      const labels = series.map((s) => s.label);
      const same = this.u && labels.length === this.labels.length && labels.every((l, i) => l === this.labels[i]);
      this.metrics = series.map((s) => s.metric);
      this.labels = labels;
      this.tables = series.map((s) => [s.x, s.y]);
      if (same) this.u.setData(this.prepared(), true);
      else this.rebuild();
    }

    prepared() {
      const data = align(this.tables);
      if (!this.log) return data;
      return [data[0], ...data.slice(1).map((ys) => ys.map((v) => (v === null || v === undefined || v > 0 ? v : null)))];
    }

    rebuild() {
      if (this.u) this.u.destroy();
      this.u = null;
      const points = this.tables.reduce((n, [xs]) => n + xs.length, 0);
      this.empty.hidden = points > 0;
      if (!this.labels.length) return;
      const n = this.labels.length;
      const paint = this.options.colors || color;
      const scatter = Boolean(this.options.points);
      const width = Math.max(260, this.plot.clientWidth || this.card.clientWidth - 24 || 400);
      const refLine = this.options.refLine;
      this.u = new uPlot({
        width,
        height: this.options.height || 220,
        legend: { live: true },
        cursor: { points: { size: 6 } },
        scales: {
          x: { time: false, distr: this.options.xLog ? 3 : 1 },
          y: { distr: this.log ? 3 : 1 },
        },
        axes: [
          { label: this.options.xLabel, labelSize: 18, size: 36, values: axisValues, stroke: "#475569",
            ...(this.options.integerX ? { incrs: INTEGER_STEPS } : {}), ...axisLines(this.options.xLog) },
          { values: axisValues, size: 58, stroke: "#475569", ...axisLines(this.log) },
        ],
        series: [
          { label: this.options.xLabel || "x", value: (u, v) => fmt(v) },
          ...this.labels.map((label, i) => ({
            label,
            stroke: paint(i, n),
            width: 1.6,
            spanGaps: true,
            value: (u, v) => fmt(v),
            ...(scatter ? { paths: () => null, points: { show: true, size: 9, fill: paint(i, n) } } : { points: { show: false } }),
          })),
        ],
        hooks: refLine === undefined ? {} : {
          draw: [(u) => {
            const y = u.valToPos(refLine, "y", true);
            if (!Number.isFinite(y) || y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = "#ef4444";
            ctx.setLineDash([6, 4]);
            ctx.lineWidth = 1.5;
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, y);
            ctx.lineTo(u.bbox.left + u.bbox.width, y);
            ctx.stroke();
            ctx.restore();
          }],
        },
      }, this.prepared(), this.plot);
    }

    resize() {
      if (this.u && this.plot.clientWidth) this.u.setSize({ width: this.plot.clientWidth, height: this.u.height });
    }
  }

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => Object.values(charts).forEach((c) => c.resize()), 100);
  });

  /** Call fn at most once per animation frame, however often it is asked for. */
  function throttled(fn) {
    let pending = false;
    return () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; fn(); });
    };
  }

  /** Mark the page drawn (html[data-ready]): its first data are on screen; live updates may follow. */
  function ready() {
    document.documentElement.dataset.ready = "true";
  }

  function showError(host, error) {
    console.error(error);
    host.append(h("div", { class: "card error", role: "alert" }, String(error.message || error)));
  }

  window.trainyard = {
    TERMINAL, h, fill, fmt, ago, duration, paramNames, paramLabel, statusBadge, verdictBadges, bestOf,
    api, all, metrics, follow, ApiError, Chart, charts, color, ramp, throttled, showError, sleep, ready,
  };
})();
