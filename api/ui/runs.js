/* The runs list: filters (status, name), pages of `limit` runs through `cursor`, picks for the compare page. */
"use strict";

(() => {
  const { h, fill, fmt, ago, api, statusBadge, verdictBadges, bestOf, TERMINAL, showError } = window.trainyard;
  const PICKED = "trainyard.picked";
  const body = document.querySelector("#runs tbody");
  const form = document.getElementById("filters");
  const picked = new Set(JSON.parse(sessionStorage.getItem(PICKED) || "[]"));
  const params = new URLSearchParams(location.search);
  const cursors = [null]; // cursors[i]: where page i starts
  let page = 0;
  let next = null;
  let refresh = null;

  form.status.value = params.get("status") || "";
  form.name.value = params.get("name") || "";
  if (params.get("limit")) form.limit.value = params.get("limit");

  function query(cursor) {
    const q = new URLSearchParams({ limit: form.limit.value });
    if (form.status.value) q.set("status", form.status.value);
    if (form.name.value.trim()) q.set("name", form.name.value.trim());
    if (cursor) q.set("cursor", cursor);
    return q;
  }

  function savePicks() {
    sessionStorage.setItem(PICKED, JSON.stringify([...picked]));
    const button = document.getElementById("compare");
    button.disabled = picked.size < 1;
    button.textContent = picked.size ? `Compare selected (${picked.size})` : "Compare selected";
    document.getElementById("picked").textContent = picked.size ? "" : "pick runs to overlay their curves";
  }

  function epochs(run) {
    const total = run.spec?.epochs;
    if (run.kind !== "run") return run.summary?.epochs ?? "—";
    if (!TERMINAL.has(run.status) && total) return `${run.epoch} / ${total}`;
    return run.summary?.epochs ?? run.epoch;
  }

  function row(run) {
    const best = bestOf(run);
    const s = run.summary || {};
    const box = h("input", { type: "checkbox", class: "pick-run", value: run.id, checked: picked.has(run.id),
      "aria-label": `pick ${run.name}`,
      onchange: (event) => { event.target.checked ? picked.add(run.id) : picked.delete(run.id); savePicks(); } });
    const valAcc = run.kind === "kfold" ? s.mean?.val_accuracy : s.val_accuracy;
    const testAcc = run.kind === "kfold" ? s.mean?.test_accuracy : s.test_accuracy;
    return h("tr", { "data-run": run.id },
      h("td", { class: "pick" }, box),
      h("td", {}, statusBadge(run.status)),
      h("td", { class: "name" }, h("a", { href: `/ui/runs/${encodeURIComponent(run.id)}` }, run.name),
        run.kind !== "run" ? h("span", { class: "kind" }, run.kind) : null),
      h("td", { class: "num", title: best ? `${best.metric} (${best.note})` : "" },
        best ? h("span", { class: best.note === "last epoch" ? "last" : "" }, fmt(best.value)) : "—",
        best ? h("span", { class: "metric-name" }, ` ${best.metric}`) : null),
      h("td", { class: "num" }, fmt(valAcc)),
      h("td", { class: "num" }, fmt(testAcc)),
      h("td", { class: "num" }, epochs(run)),
      h("td", { class: "verdict-cell" }, verdictBadges(run.verdicts)),
      h("td", { class: "when", title: run.created_at }, ago(run.created_at)),
      h("td", { class: "id" }, h("code", {}, run.id.replace(/^run_/, "").slice(-8))));
  }

  async function load() {
    clearTimeout(refresh);
    const q = query(cursors[page]);
    history.replaceState(null, "", `/ui?${new URLSearchParams([...q].filter(([k]) => k !== "cursor"))}`);
    let list;
    try {
      list = await api(`/v1/runs?${q}`);
    } catch (error) {
      showError(document.querySelector("main"), error);
      return;
    }
    next = list.next_cursor;
    fill(body, list.items.map(row));
    document.getElementById("no-runs").hidden = list.items.length > 0;
    document.getElementById("newer").disabled = page === 0;
    document.getElementById("older").disabled = !next;
    const size = Number(form.limit.value);
    document.getElementById("page-info").textContent = list.items.length
      ? `runs ${page * size + 1}–${page * size + list.items.length}` : "";
    document.getElementById("pick-all").checked = list.items.length > 0 && list.items.every((r) => picked.has(r.id));
    window.trainyard.ready();
    if (list.items.some((r) => !TERMINAL.has(r.status))) refresh = setTimeout(load, 3000); // follow live runs
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    cursors.length = 1;
    page = 0;
    load();
  });
  for (const field of [form.status, form.limit]) field.addEventListener("change", () => form.requestSubmit());
  document.getElementById("older").addEventListener("click", () => {
    cursors[page + 1] = next;
    page += 1;
    load();
  });
  document.getElementById("newer").addEventListener("click", () => {
    page = Math.max(0, page - 1);
    load();
  });
  document.getElementById("pick-all").addEventListener("change", (event) => {
    for (const box of body.querySelectorAll(".pick-run")) {
      box.checked = event.target.checked;
      event.target.checked ? picked.add(box.value) : picked.delete(box.value);
    }
    savePicks();
  });
  document.getElementById("compare").addEventListener("click", () => {
    location.href = `/ui/compare?ids=${[...picked].map(encodeURIComponent).join(",")}`;
  });
  savePicks();
  load();
})();
