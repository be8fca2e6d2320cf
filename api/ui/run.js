/* The run page /ui/runs/{id}: curves and layer health that grow over the event stream while the run
   trains, verdicts with their suggested change, the layer table and the resolved spec. A sweep or
   k-fold parent gets the parent view: every child's curve overlaid, a ranked table, and each
   parameter against the metric. */
"use strict";

(() => {
  const T = window.trainyard;
  const { h, fill, fmt, api, Chart, TERMINAL } = T;
  const runId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const main = document.getElementById("run");
  const path = `/v1/runs/${encodeURIComponent(runId)}`;
  const byName = (a, b) => a.localeCompare(b, undefined, { numeric: true });

  /* ---------- shared by both views ---------- */

  function section(title, ...children) {
    const node = h("section", { class: "section" }, h("h2", {}, title), ...children);
    main.append(node);
    return node;
  }

  function tile(label, value, note) {
    return h("div", { class: "tile" }, h("div", { class: "tile-label" }, label),
      h("div", { class: "tile-value" }, value), note ? h("div", { class: "tile-note" }, note) : null);
  }

  function head(run) {
    const links = [];
    if (run.parent_id) {
      links.push(h("a", { href: `/ui/runs/${encodeURIComponent(run.parent_id)}` },
        run.trial === null ? "parent run" : `trial ${run.trial} of its parent`));
    }
    if (run.retry_of) links.push(h("a", { href: `/ui/runs/${encodeURIComponent(run.retry_of)}` }, "retry of an earlier run"));
    const cancel = TERMINAL.has(run.status) ? null : h("button", { id: "cancel", onclick: async (event) => {
      event.target.disabled = true;
      try { await api(`${path}/cancel`, { method: "POST" }); } catch (error) { T.showError(main, error); }
    } }, "Cancel");
    fill(document.getElementById("head"),
      h("div", {}, h("h1", {}, run.name, " ", h("span", { id: "run-status" }, T.statusBadge(run.status))),
        h("p", { class: "muted meta" }, [
          run.kind === "run" ? null : h("span", { class: "kind" }, run.kind),
          h("code", {}, run.id), `created ${T.ago(run.created_at)}`,
          run.worker ? `worker ${run.worker}` : null, run.attempt > 1 ? `attempt ${run.attempt}` : null, ...links,
        ].filter(Boolean).flatMap((part, i) => (i ? [" · ", part] : [part])))),
      cancel);
  }

  function setStatus(status) {
    fill(document.getElementById("run-status"), T.statusBadge(status));
    if (TERMINAL.has(status)) document.getElementById("cancel")?.remove();
  }

  function specSection(run) {
    const details = h("details", { class: "card" }, h("summary", {}, "Resolved spec (JSON)"),
      h("pre", { id: "spec", class: "spec" }, JSON.stringify(run.spec, null, 2)));
    main.append(h("section", { class: "section" }, details));
  }

  /* ---------- a run ---------- */

  const CURVES = [
    { name: "loss", title: "Loss per epoch", names: ["train_loss", "val_loss"], x: "epoch" },
    { name: "accuracy", title: "Accuracy per epoch", names: ["train_accuracy", "val_accuracy"], x: "epoch" },
    { name: "running_loss", title: "Training loss per step (running mean)", names: ["train_loss_running"], x: "step" },
    { name: "lr", title: "Learning rate", names: ["lr"], x: "epoch" },
  ];
  const layerOf = (name) => name.split("/")[1].replace(/\.weight$/, "");
  const HEALTH = [
    { name: "act_std", title: "Activation std per layer", log: true, pattern: /^act\/[^/]+\/std$/, label: layerOf },
    { name: "dead_saturated", title: "Dead / saturated share of units", pattern: /^act\/[^/]+\/(dead|saturated)$/,
      label: (n) => `${layerOf(n)} ${n.split("/")[2]}` },
    { name: "grad_norm", title: "Gradient norm per weight", log: true, pattern: /^grad_norm\//, label: layerOf },
    { name: "update_ratio", title: "Update / weight ratio (line: 1e-3)", log: true, pattern: /^update_ratio\//,
      label: layerOf, refLine: 1e-3 },
  ];

  const store = {}; // metric name → {step, epoch, value}

  function add(name, step, epoch, value) {
    const series = store[name] || (store[name] = { step: [], epoch: [], value: [] });
    const last = series.step.length - 1;
    if (last >= 0 && step <= series.step[last]) return false; // already read from /metrics
    series.step.push(step);
    series.epoch.push(epoch);
    series.value.push(value);
    return true;
  }

  function curveSeries(def) {
    return def.names.filter((n) => store[n]).map((n) => ({ metric: n, label: n, x: store[n][def.x], y: store[n].value }));
  }

  function healthSeries(def) {
    const names = Object.keys(store).filter((n) => def.pattern.test(n)).sort(byName);
    return names.map((n) => ({ metric: n, label: def.label(n), x: store[n].step, y: store[n].value }));
  }

  function lastValue(name) {
    const series = store[name];
    return series ? series.value[series.value.length - 1] : undefined;
  }

  /** The lowest validation loss over the epochs, from the points on the page (the summary only has
      the last epoch's unless early stopping kept the best). */
  function bestPoint() {
    const series = store.val_loss;
    let at = -1;
    for (let i = 0; series && i < series.value.length; i++) {
      if (series.value[i] !== null && (at < 0 || series.value[i] < series.value[at])) at = i;
    }
    return at < 0 ? null : { metric: "val_loss", value: series.value[at], note: `epoch ${series.epoch[at]}` };
  }

  function summaryTiles(host, run, epoch) {
    const s = run.summary || {};
    const best = s.best_val_loss === undefined ? bestPoint() || T.bestOf(run) : T.bestOf(run);
    const total = run.spec?.epochs;
    const live = !TERMINAL.has(run.status);
    fill(host,
      tile("Epochs", `${s.epochs ?? epoch ?? run.epoch}${total ? ` / ${total}` : ""}`),
      tile(best ? `Best ${best.metric}` : "Best validation", fmt(best?.value), best?.note),
      tile("Val accuracy", fmt(s.val_accuracy ?? lastValue("val_accuracy")), live ? "latest epoch" : "last epoch"),
      tile("Test accuracy", fmt(s.test_accuracy), s.test_loss !== undefined ? `test loss ${fmt(s.test_loss)}` : null),
      tile("Parameters", s.params === undefined ? "—" : s.params.toLocaleString()),
      tile("Time", T.duration(s.seconds ?? (live && run.started_at ? (Date.now() - Date.parse(run.started_at)) / 1000 : null))));
    const reason = run.failure || run.stop_reason;
    if (reason) host.append(h("p", { class: run.failure ? "error reason" : "muted reason" }, reason));
  }

  function suggestionText(ops) {
    return ops.map((op) => (op.op === "remove" ? `remove ${op.path}` : `${op.path} → ${JSON.stringify(op.value)}`)).join(", ");
  }

  /** The evidence as name/value pairs: a nested object's fields are named `outer.inner`. */
  function evidencePairs(evidence, prefix = "") {
    return Object.entries(evidence).flatMap(([k, v]) => (v && typeof v === "object" && !Array.isArray(v)
      ? evidencePairs(v, `${prefix}${k}.`) : [[`${prefix}${k}`, v]]));
  }

  function evidenceText(value) {
    if (Array.isArray(value)) {
      if (!value.every((v) => typeof v !== "object" || v === null)) return JSON.stringify(value);
      return `[${value.slice(0, 8).map((v) => fmt(v)).join(", ")}${value.length > 8 ? ", …" : ""}]`;
    }
    return typeof value === "number" ? fmt(value) : String(value);
  }

  function evidenceRow(pills, shown = 6) {
    const row = h("div", { class: "evidence-row" }, pills.slice(0, shown));
    if (pills.length > shown) {
      row.append(h("button", { class: "link", onclick: (event) => { event.target.replaceWith(...pills.slice(shown)); } },
        `+${pills.length - shown} more`));
    }
    return row;
  }

  function verdictCard(run, verdict) {
    const error = h("pre", { class: "error", hidden: true });
    const ops = verdict.suggestion || [];
    const apply = ops.length ? h("button", { class: "primary apply", "data-verdict": verdict.code,
      onclick: async (event) => {
        event.target.disabled = true;
        error.hidden = true;
        try {
          const retried = await api(`${path}/retry`, { method: "POST", body: { patch: ops } });
          location.href = `/ui/runs/${encodeURIComponent(retried.id)}`;
        } catch (failure) {
          error.textContent = String(failure.message || failure);
          error.hidden = false;
          event.target.disabled = false;
        }
      }, title: "submit a new run from this spec with the change applied" }, `Apply ${suggestionText(ops)}`) : null;
    const evidence = evidencePairs(verdict.evidence || {}).map(([k, v]) => {
      const text = evidenceText(v);
      return h("span", { class: "evidence", title: text.length > 60 ? JSON.stringify(v) : null }, `${k} `,
        h("b", {}, text.length > 60 ? `${text.slice(0, 57)}…` : text));
    });
    return h("div", { class: `verdict sev-${verdict.severity}`, "data-verdict": verdict.code },
      h("div", { class: "verdict-head" }, h("span", { class: `badge sev-${verdict.severity}` }, verdict.severity),
        h("strong", {}, verdict.code), verdict.pointer ? h("code", { class: "pointer" }, verdict.pointer) : null,
        h("span", { class: "spacer" }), apply),
      h("p", {}, verdict.message), evidence.length ? evidenceRow(evidence) : null, error);
  }

  function renderVerdicts(host, run, verdicts) {
    host.hidden = verdicts === undefined || verdicts === null; // not assessed (or not reported by this API)
    if (host.hidden) return;
    const list = host.querySelector(".verdicts");
    if (!verdicts.length) {
      fill(list, h("p", { class: "muted ok" }, TERMINAL.has(run.status)
        ? "No verdicts: nothing in the curves or the layer statistics looks wrong."
        : "No verdicts so far; they are checked at every epoch end."));
      return;
    }
    fill(list, verdicts.map((v) => verdictCard(run, v)));
  }

  function healthTable(host) {
    const layers = (pattern) => [...new Set(Object.keys(store).filter((n) => pattern.test(n)).map(layerOf))].sort(byName);
    const activations = layers(/^act\//);
    const weights = layers(/^(grad_norm|update_ratio)\//);
    if (!activations.length && !weights.length) return fill(host);
    const cell = (value, flag) => h("td", { class: `num ${flag ? `flag-${flag}` : ""}` }, fmt(value, 3));
    const share = (v) => (v === undefined ? null : v > 0.5 ? "bad" : v > 0.1 ? "warn" : null);
    const ratio = (v) => (v === undefined ? null : v < 1e-5 || v > 1e-1 ? "bad" : v < 1e-4 || v > 1e-2 ? "warn" : null);
    const table = (id, columns, rows) => h("div", { class: "card flush" }, h("table", { class: "table compact", id },
      h("thead", {}, h("tr", {}, columns.map((c, i) => h("th", { class: i ? "num" : "" }, c)))), h("tbody", {}, rows)));
    fill(host,
      h("div", { class: "grid two" },
        activations.length ? table("activation-table", ["activation", "mean", "std", "dead", "saturated"],
          activations.map((layer) => {
            const dead = lastValue(`act/${layer}/dead`);
            const saturated = lastValue(`act/${layer}/saturated`);
            return h("tr", {}, h("td", {}, h("code", {}, layer)), cell(lastValue(`act/${layer}/mean`)),
              cell(lastValue(`act/${layer}/std`)), cell(dead, share(dead)), cell(saturated, share(saturated)));
          })) : h("div"),
        weights.length ? table("weight-table", ["weight", "grad norm", "update ratio"], weights.map((layer) => {
          const update = lastValue(`update_ratio/${layer}.weight`);
          return h("tr", {}, h("td", {}, h("code", {}, `${layer}.weight`)),
            cell(lastValue(`grad_norm/${layer}.weight`)), cell(update, ratio(update)));
        })) : h("div")),
      h("p", { class: "muted small" }, "Latest value per layer, first layer at the top. Update ratios near 1e-3 are the ",
        "rule of thumb (flagged beyond 1e-4…1e-2); a dead or saturated share above 10 % is flagged."));
  }

  function initLoss(host) {
    const seen = lastValue("init_loss");
    const expected = lastValue("init_loss_expected");
    if (seen === undefined) return fill(host);
    fill(host, h("span", {}, "Initial loss ", h("b", {}, fmt(seen)),
      expected !== undefined ? [" against ln C = ", h("b", {}, fmt(expected)), ` (×${fmt(seen / expected, 3)})`] : null));
  }

  async function layerTable(host, run) {
    try {
      const report = await api("/v1/specs/validate", { method: "POST", body: run.spec });
      fill(host, h("table", { class: "table compact", id: "layers" },
        h("thead", {}, h("tr", {}, ["layer", "type", "output shape", "parameters", "FLOPs", "spec field"]
          .map((c, i) => h("th", { class: i === 3 || i === 4 ? "num" : "" }, c)))),
        h("tbody", {}, report.layers.map((layer) => h("tr", {},
          h("td", {}, h("code", {}, layer.name)), h("td", {}, layer.type),
          h("td", {}, `[${layer.output_shape.join(", ")}]`), h("td", { class: "num" }, layer.params.toLocaleString()),
          h("td", { class: "num" }, layer.flops.toLocaleString()), h("td", {}, h("code", {}, layer.pointer)))))),
      h("p", { class: "muted small" }, `${report.params.toLocaleString()} parameters · `,
        `${report.flops_per_sample.toLocaleString()} FLOPs per sample · `,
        `about ${fmt(report.memory_estimate_bytes / 2 ** 20, 3)} MiB to train · input [${report.input_shape.join(", ")}]`));
    } catch (error) {
      fill(host, h("p", { class: "error" }, `The spec no longer validates: ${error.message}`));
    }
  }

  async function runView(run, early) {
    const tiles = h("div", { class: "tiles", id: "summary" });
    main.append(tiles);
    summaryTiles(tiles, run);
    const verdicts = section("Verdicts", h("div", { class: "verdicts", id: "verdicts" }));
    renderVerdicts(verdicts, run, run.verdicts);

    const curves = h("div", { class: "grid two" });
    section("Learning curves", curves);
    const initHost = h("p", { class: "muted", id: "init-loss" });
    const healthGrid = h("div", { class: "grid two" });
    const tableHost = h("div", { class: "health-tables" });
    const health = section("Layer health", initHost, healthGrid, tableHost);
    const layersHost = h("div", { class: "card flush" }, h("p", { class: "muted" }, "validating the spec…"));
    section("Layers", layersHost);
    specSection(run);

    const live = !TERMINAL.has(run.status);
    const data = (await early) || (await T.metrics(runId));
    for (const [name, series] of Object.entries(data.series)) store[name] = { ...series };
    const defs = [...CURVES.map((d) => ({ ...d, kind: "curve" })), ...HEALTH.map((d) => ({ ...d, kind: "health" }))];
    for (const def of defs) {
      const series = def.kind === "curve" ? curveSeries(def) : healthSeries(def);
      if (!series.length && !live) continue; // nothing recorded, nothing coming
      def.chart = new Chart(def.name, def.kind === "curve" ? curves : healthGrid, {
        title: def.title, xLabel: def.x || "step", log: def.log, refLine: def.refLine, integerX: true, height: 200,
        colors: def.kind === "health" ? T.ramp : undefined,
      });
      def.chart.set(series);
    }
    if (!healthGrid.children.length) {
      health.append(h("p", { class: "muted" }, "No layer statistics: diagnostics were off for this run (",
        h("code", {}, "diagnostics"), " in the spec)."));
    }
    initLoss(initHost);
    healthTable(tableHost);
    summaryTiles(tiles, run);
    T.ready();
    layerTable(layersHost, run); // below the fold: asked for once the charts are drawn
    if (!live) return;

    const dirty = new Set();
    let epoch = run.epoch;
    const redraw = T.throttled(() => {
      for (const def of defs) {
        if (!def.chart || !dirty.has(def.name)) continue;
        def.chart.set(def.kind === "curve" ? curveSeries(def) : healthSeries(def));
      }
      if (dirty.has("health")) {
        initLoss(initHost);
        healthTable(tableHost);
      }
      if (dirty.has("loss") && !run.summary) summaryTiles(tiles, run, epoch);
      dirty.clear();
    });
    const finished = async () => {
      run = await api(path);
      setStatus(run.status);
      summaryTiles(tiles, run);
      renderVerdicts(verdicts, run, run.verdicts);
    };
    const onEvent = (type, event) => {
      if (event.run_id && event.run_id !== runId) return;
      if (type === "metric") {
        if (event.value === null || !add(event.name, event.step, event.epoch, event.value)) return;
        epoch = Math.max(epoch, event.epoch);
        for (const def of defs) {
          if (def.kind === "curve" ? def.names.includes(event.name) : def.pattern.test(event.name)) dirty.add(def.name);
        }
        if (!CURVES.some((d) => d.names.includes(event.name))) dirty.add("health");
        redraw();
      } else if (type === "status") {
        setStatus(event.status);
        epoch = Math.max(epoch, event.epoch || 0);
        if (TERMINAL.has(event.status)) finished();
      } else if (type === "verdicts") {
        renderVerdicts(verdicts, run, event.verdicts);
      }
    };
    while (!TERMINAL.has(run.status)) { // the server ends the stream once the run has finished
      await T.follow(`${path}/events`, onEvent);
      await finished();
      if (!TERMINAL.has(run.status)) await T.sleep(1000);
    }
  }

  /* ---------- a sweep or k-fold parent ---------- */

  async function parentView(run) {
    const sweep = run.spec.sweep;
    const tiles = h("div", { class: "tiles", id: "summary" });
    main.append(tiles);
    const overlay = h("div", {});
    const scatterHost = h("div", { class: "grid" });
    section(sweep ? "Every trial's curve, and each parameter against the metric" : "Every fold's curve",
      sweep ? h("div", { class: "grid split" }, overlay, scatterHost) : overlay);
    const tableHost = h("div", { class: "card flush" });
    section(sweep ? "Trials, best first" : "Folds", tableHost);
    specSection(run);

    let children = await T.all(`${path}/children`);
    const metric = children.metric || "val_loss";
    const mode = children.mode || "min";
    const keys = sweep ? Object.keys(sweep.parameters) : [];
    const names = T.paramNames(keys);
    const label = (child) => (sweep ? `#${child.trial} ${T.paramLabel(child.params, names)}` : `fold ${child.trial}`);
    const curves = {}; // child id → {epoch, value}
    const chart = new Chart("children", overlay, { title: `${metric} per epoch, one line per ${sweep ? "trial" : "fold"}`,
      xLabel: "epoch", height: 300, integerX: true });
    const scatters = keys.map((key) => {
      const spec = sweep.parameters[key];
      const values = Array.isArray(spec) ? spec : [spec.low, spec.high];
      const numeric = values.every((v) => typeof v === "number");
      const xLog = spec.type === "log_uniform"
        || (numeric && Math.min(...values) > 0 && Math.max(...values) / Math.min(...values) >= 100);
      const categories = numeric ? null : values.map((v) => JSON.stringify(v));
      return { key, categories, chart: new Chart(`param:${key}`, scatterHost, { title: `${names[key]} → ${metric}`,
        xLabel: categories ? `${names[key]} (${categories.join(", ")})` : names[key], points: true, xLog,
        height: keys.length === 1 ? 300 : 180 }) };
    });

    const valueOf = (child) => (sweep ? child.metric : child.summary?.[metric]);
    function ranked() {
      const sign = mode === "max" ? -1 : 1;
      return [...children.items].sort((a, b) => {
        const va = valueOf(a);
        const vb = valueOf(b);
        if (va === null || va === undefined) return vb === null || vb === undefined ? a.trial - b.trial : 1;
        if (vb === null || vb === undefined) return -1;
        return sign * (va - vb);
      });
    }

    function drawCurves() {
      chart.set(children.items.map((child) => {
        const points = curves[child.id] || { epoch: [], value: [] };
        return { metric: child.id, label: label(child), x: points.epoch, y: points.value };
      }));
    }

    function drawScatters() {
      for (const { key, categories, chart: scatter } of scatters) {
        const pairs = children.items.filter((c) => valueOf(c) !== null && valueOf(c) !== undefined && c.params)
          .map((c) => [categories ? categories.indexOf(JSON.stringify(c.params[key])) : c.params[key], valueOf(c)])
          .sort((a, b) => a[0] - b[0]);
        scatter.set([{ metric: metric, label: `best ${metric}`, x: pairs.map((p) => p[0]), y: pairs.map((p) => p[1]) }]);
      }
    }

    function drawSummary() {
      const s = run.summary || {};
      const counts = {};
      for (const c of children.items) counts[c.status] = (counts[c.status] || 0) + 1;
      const outcome = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
      if (sweep) {
        const best = children.items.find((c) => c.id === children.best_id);
        fill(tiles,
          tile("Trials", `${children.items.length}${s.trials ? ` / ${s.trials}` : ""}`, outcome),
          tile("Search", sweep.method, sweep.early_stop ? `early stop: ${sweep.early_stop.type || "on"}` : "no early stop"),
          tile(`Best ${metric}`, fmt(best ? best.metric : undefined), mode === "max" ? "highest" : "lowest"),
          tile("Best parameters", best ? h("a", { href: `/ui/runs/${encodeURIComponent(best.id)}` },
            T.paramLabel(best.params, names)) : "—", best ? `trial ${best.trial}` : null),
          tile("Time", T.duration(s.seconds)));
      } else {
        fill(tiles,
          tile("Folds", `${children.items.length}`, outcome),
          ...["val_loss", "val_accuracy", "test_accuracy"].map((m) =>
            tile(`Mean ${m}`, fmt(s.mean?.[m]), s.std ? `± ${fmt(s.std[m], 3)}` : null)),
          tile("Time", T.duration(s.seconds)));
      }
    }

    function drawTable() {
      const head = ["", sweep ? "trial" : "fold", ...keys.map((k) => names[k]), "status", sweep ? `best ${metric}` : metric,
        "epochs", "val acc", "test acc", "verdicts", "note"];
      const status = 2 + keys.length;
      const numeric = new Set(head.map((_, i) => i).filter((i) => i === 0 || (i > 1 && i < status) || (i > status && i < head.length - 2)));
      fill(tableHost, h("table", { class: "table", id: "children" },
        h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { class: numeric.has(i) ? "num" : "" }, c)))),
        h("tbody", {}, ranked().map((c, rank) => h("tr", { "data-run": c.id, class: c.best ? "best" : "" },
          h("td", { class: "num muted" }, valueOf(c) === null || valueOf(c) === undefined ? "" : rank + 1),
          h("td", {}, h("a", { href: `/ui/runs/${encodeURIComponent(c.id)}` }, `${sweep ? "#" : "fold "}${c.trial}`),
            c.best ? h("span", { class: "star", title: "best trial" }, " ★") : null),
          ...keys.map((k) => h("td", { class: "num" }, fmt(c.params?.[k]))),
          h("td", {}, T.statusBadge(c.status)),
          h("td", { class: "num" }, fmt(valueOf(c))),
          h("td", { class: "num" }, c.summary?.epochs ?? c.epoch),
          h("td", { class: "num" }, fmt(c.summary?.val_accuracy)),
          h("td", { class: "num" }, fmt(c.summary?.test_accuracy)),
          h("td", {}, T.verdictBadges(c.verdicts)),
          h("td", { class: "muted small" }, c.failure || c.stop_reason || ""))))));
    }

    async function fetchCurves(items) {
      const queue = items.filter((c) => !curves[c.id]);
      const workers = Array.from({ length: 6 }, async () => {
        for (let child = queue.shift(); child; child = queue.shift()) {
          const data = await T.metrics(child.id, [metric]);
          const series = data.series[metric] || { epoch: [], value: [] };
          curves[child.id] = { epoch: [...series.epoch], value: [...series.value] };
        }
      });
      await Promise.all(workers);
    }

    drawSummary();
    drawTable();
    await fetchCurves(children.items);
    drawCurves();
    drawScatters();
    T.ready();
    if (TERMINAL.has(run.status)) return;

    let refreshing = null;
    const refresh = () => {
      clearTimeout(refreshing);
      refreshing = setTimeout(async () => {
        [run, children] = await Promise.all([api(path), T.all(`${path}/children`)]);
        setStatus(run.status);
        await fetchCurves(children.items);
        drawSummary();
        drawTable();
        drawCurves();
        drawScatters();
      }, 300);
    };
    const redraw = T.throttled(drawCurves);
    const onEvent = (type, event) => {
      if (type === "metric" && event.name === metric && event.value !== null) {
        const points = curves[event.run_id];
        if (!points) return refresh(); // a child this page has not seen yet
        if (points.epoch.length && event.epoch <= points.epoch[points.epoch.length - 1]) return;
        points.epoch.push(event.epoch);
        points.value.push(event.value);
        redraw();
      } else if (type === "status") {
        refresh();
      }
    };
    for (;;) { // until the parent and every child have finished
      await T.follow(`${path}/events`, onEvent);
      refresh();
      run = await api(path);
      if (TERMINAL.has(run.status)) break;
      await T.sleep(1000);
    }
  }

  async function start() {
    const early = T.metrics(runId).catch(() => null); // along with the run itself: the largest request
    let run;
    try {
      run = await api(path);
    } catch (error) {
      fill(document.getElementById("head"), h("h1", {}, error.status === 404 ? "Run not found" : "Could not load the run"));
      T.showError(main, error);
      return;
    }
    document.title = `${run.name} · Trainyard`;
    head(run);
    try {
      await (run.kind === "run" ? runView(run, early) : parentView(run));
    } catch (error) {
      T.showError(main, error);
    }
  }

  start();
})();
