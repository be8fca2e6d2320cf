/* The compare page /ui/compare?ids=a,b,c: the picked runs' curves overlaid, their numbers side by
   side, and the spec fields in which they differ. A sweep stands in with its best trial. */
"use strict";

(() => {
  const T = window.trainyard;
  const { h, fill, fmt, api, Chart } = T;
  const main = document.getElementById("compare");
  const ids = (new URLSearchParams(location.search).get("ids") || "").split(",").map((s) => s.trim()).filter(Boolean);
  const CHARTS = [
    { name: "val_loss", title: "Validation loss" },
    { name: "val_accuracy", title: "Validation accuracy" },
    { name: "train_loss", title: "Training loss" },
    { name: "train_accuracy", title: "Training accuracy" },
  ];

  /** Every leaf of a JSON document by its pointer. */
  function leaves(value, pointer = "", out = {}) {
    if (value && typeof value === "object" && !(Array.isArray(value) && value.every((v) => typeof v !== "object"))) {
      for (const [k, v] of Object.entries(value)) leaves(v, `${pointer}/${k}`, out);
    } else {
      out[pointer] = JSON.stringify(value);
    }
    return out;
  }

  async function start() {
    const head = document.getElementById("head");
    fill(head, h("div", {}, h("h1", {}, "Compare runs"),
      h("p", { class: "muted" }, ids.length ? `${ids.length} runs picked on the runs list` : "")));
    if (!ids.length) {
      main.append(h("p", { class: "card empty" }, "Pick runs on the ", h("a", { href: "/ui" }, "runs list"), " to compare them."));
      return;
    }
    const runs = await Promise.all(ids.map((id) => api(`/v1/runs/${encodeURIComponent(id)}`)));
    const shown = runs.map((run) => {
      const curveRun = run.kind === "sweep" ? run.summary?.best?.run : run.kind === "run" ? run.id : null;
      const suffix = run.kind === "sweep" ? " (best trial)" : "";
      return { run, curveRun, label: `${run.name} · ${run.id.slice(-6)}${suffix}` };
    });
    const series = await Promise.all(shown.map((s) => (s.curveRun
      ? T.metrics(s.curveRun, CHARTS.map((c) => c.name)).then((d) => d.series) : {})));

    const grid = h("div", { class: "grid two" });
    main.append(h("section", { class: "section" }, h("h2", {}, "Curves"), grid));
    for (const def of CHARTS) {
      const chart = new Chart(def.name, grid, { title: def.title, xLabel: "epoch", height: 240 });
      chart.set(shown.map((s, i) => ({ metric: def.name, label: s.label,
        x: series[i][def.name]?.epoch || [], y: series[i][def.name]?.value || [] })));
    }

    const rows = [
      ["status", (r) => T.statusBadge(r.status)],
      ["kind", (r) => r.kind],
      ["best validation", (r) => { const b = T.bestOf(r); return b ? `${fmt(b.value)} ${b.metric}` : "—"; }],
      ["val accuracy", (r) => fmt(r.summary?.val_accuracy ?? r.summary?.mean?.val_accuracy)],
      ["test accuracy", (r) => fmt(r.summary?.test_accuracy ?? r.summary?.mean?.test_accuracy)],
      ["epochs", (r) => r.summary?.epochs ?? r.epoch],
      ["time", (r) => T.duration(r.summary?.seconds)],
      ["verdicts", (r) => T.verdictBadges(r.verdicts)],
    ];
    const specs = runs.map((r) => leaves(r.spec));
    const pointers = [...new Set(specs.flatMap((s) => Object.keys(s)))].filter((p) => p !== "/name")
      .filter((p) => new Set(specs.map((s) => s[p])).size > 1);
    const header = () => h("thead", {}, h("tr", {}, h("th", {}, ""), shown.map((s, i) =>
      h("th", {}, h("span", { class: "swatch", style: `background:${T.color(i)}` }),
        h("a", { href: `/ui/runs/${encodeURIComponent(s.run.id)}` }, s.label)))));
    const table = h("table", { class: "table", id: "compare-table" }, header(),
      h("tbody", {},
        rows.map(([name, value]) => h("tr", {}, h("th", {}, name), runs.map((r) => h("td", {}, value(r)))))));
    const differences = h("table", { class: "table compact", id: "spec-differences" }, header(), h("tbody", {},
      pointers.map((p) => h("tr", {}, h("th", {}, h("code", {}, p)), specs.map((s) => h("td", {}, h("code", {}, s[p] ?? "—")))))));
    main.append(h("section", { class: "section" }, h("h2", {}, "Side by side"), h("div", { class: "card flush" }, table)),
      h("section", { class: "section" }, h("details", { class: "card", open: pointers.length <= 15 },
        h("summary", {}, `Spec fields that differ (${pointers.length})`), differences)));
    T.ready();
  }

  start().catch((error) => T.showError(main, error));
})();
