// The interactive view of one compiled network (archc/html_view.py writes this into the page).
// Data: the JSON in #archc-data: "info" is what `archc info --json` prints, "view" the structure to draw.
// Every name and label from the data is written with textContent, never as markup.
"use strict";
(function () {
  const started = performance.now();
  const data = JSON.parse(document.getElementById("archc-data").textContent);
  const info = data.info, view = data.view;
  const stages = new Map(info.stages.map((s) => [s.name, s]));
  const blocks = new Map(info.blocks.map((b) => [b.path, b]));
  const layers = new Map(info.layers.map((l) => [l.path, l]));
  const rowOf = new Map(view.rows.map((r) => [r.name, r]));
  const mm = data.millimetres ? data.millimetres.rows : {}; // with --spacing: archc info --spacing's rows, as text, by row name
  const tree = document.getElementById("tree");
  const items = new Map(); // data-id -> element, for the items drawn so far

  // ------------------------------------------------------------------ numbers, as the text reports write them
  const shape = (s) => s.join("\u00d7");
  const axes = (a) => (!a || !a.length ? "-" : a.every((v) => v === a[0]) ? String(a[0]) : a.join("\u00d7"));
  const count = (n) => n.toLocaleString("en-US");
  function human(n) {
    for (const [unit, scale] of [["G", 1e9], ["M", 1e6], ["K", 1e3]]) {
      if (n >= scale) { const v = n / scale; return v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0) + unit; }
    }
    return String(n);
  }
  function bytes(n) {
    let v = n;
    for (const unit of ["B", "KiB", "MiB", "GiB"]) {
      if (v < 1024 || unit === "GiB") return unit === "B" ? v.toFixed(0) + " B" : v.toFixed(1) + " " + unit;
      v /= 1024;
    }
    return v.toFixed(1) + " TiB";
  }
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };

  // ------------------------------------------------------------------ what each item is: label, figures, children
  function sum(paths, key) { return paths.reduce((t, p) => t + blocks.get(p)[key], 0); }
  function lineOf(path) { const part = view.parts[path]; return part ? part.line : null; }

  function describe(id) {
    const [kind, name] = [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)];
    if (kind === "row") {
      const r = rowOf.get(name), s = stages.get(name);
      return { kind: r.kind, label: r.label, note: r.note, repeats: s.repeats > 1 ? s.repeats : 0, figures: {
        path: name.match(/^\d+$/) ? "stages." + name : r.parts.length === 1 ? r.parts[0] : name.replace(/^decoder\.(\d+)$/, "decoder.levels.$1"),
        channels: s.in_channels + " \u2192 " + s.out_channels, kernel: axes(s.kernel), stride: axes(s.stride),
        se: s.se_channels ? String(s.se_channels) : "none", shape: s.output_shape, params: s.params, macs: s.macs, activations: s.activations,
        rf: s.receptive_field, line: lineOf(r.parts[0]),
        ...(mm[name] ? { voxelMm: mm[name].voxel, extentMm: mm[name].extent, rfMm: mm[name].receptive_field } : {}) } };
    }
    if (kind === "run") {
      const [row, start, n] = name.split("|"), r = rowOf.get(row), paths = r.parts.slice(+start, +start + +n), last = blocks.get(paths[n - 1]);
      return { kind: "run " + view.parts[paths[0]].kind, label: view.parts[paths[0]].label, repeats: +n, residual: view.parts[paths[0]].residual, figures: {
        path: paths[0] + " \u2026 " + paths[n - 1], shape: last.output_shape, params: sum(paths, "params"), macs: sum(paths, "macs"),
        activations: sum(paths, "activations"), rf: last.receptive_field, line: lineOf(paths[0]) } };
    }
    if (kind === "part") {
      const b = blocks.get(name), p = view.parts[name];
      return { kind: p.kind, label: p.label, residual: p.residual, figures: {
        path: name, shape: b.output_shape, params: b.params, macs: b.macs, activations: b.activations, rf: b.receptive_field, line: p.line } };
    }
    const l = layers.get(name);
    const owner = Object.keys(view.parts).find((p) => view.parts[p].layers.includes(name));
    return { kind: "layer", label: name.slice(owner.length + 1) || name, figures: {
      path: name, type: l.type + " (" + l.detail + ")", channels: l.in_channels + " \u2192 " + l.out_channels,
      kernel: axes(l.kernel), stride: axes(l.stride), groups: l.kernel.length ? String(l.groups) : "-", shape: l.output_shape,
      params: l.params, macs: l.macs, line: lineOf(owner) } };
  }

  function children(id) {
    const [kind, name] = [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)];
    if (kind === "row") {
      const r = rowOf.get(name);
      if (r.parts.length === 1 && r.parts[0] === name) return view.parts[name].layers.map((l) => "layer:" + l);
      const ids = [];
      for (let i = 0; i < r.parts.length; i++) {
        const run = r.runs.find(([start]) => start === i);
        if (run) { ids.push("run:" + name + "|" + run[0] + "|" + run[1]); i += run[1] - 1; } else ids.push("part:" + r.parts[i]);
      }
      return ids;
    }
    if (kind === "run") {
      const [row, start, n] = name.split("|");
      return rowOf.get(row).parts.slice(+start, +start + +n).map((p) => "part:" + p);
    }
    if (kind === "part") return view.parts[name].layers.map((l) => "layer:" + l);
    return [];
  }

  // ------------------------------------------------------------------ drawing
  const kind = (id) => id.slice(0, id.indexOf(":"));
  function makeItem(id, level) {
    const d = describe(id), kids = children(id), f = d.figures;
    const item = el("div", "item " + d.kind);
    item.dataset.id = id;
    item.setAttribute("role", "treeitem");
    item.setAttribute("aria-level", String(level));
    item.tabIndex = -1;
    const box = el("div", "box");
    box.append(el("span", "toggle", kids.length ? "+" : ""));
    const label = el("span", "label", d.label);
    if (kind(id) !== "row" && kind(id) !== "layer") label.prepend(el("span", "path", d.figures.path + "  "));
    if (d.repeats) label.append(el("span", "repeat", "x " + d.repeats));
    if (d.residual) label.append(el("span", "residual", "+ skip"));
    if (d.note) label.append(el("span", "note", d.note));
    box.append(label);
    box.append(el("span", "summary", "out " + shape(f.shape) + " \u00b7 " + human(f.params) + " params \u00b7 " + human(f.macs) + " MACs"));
    item.append(box);
    if (kids.length) item.setAttribute("aria-expanded", "false");
    box.addEventListener("click", () => { select(item); if (kids.length) toggle(item); });
    items.set(id, item);
    return item;
  }

  function expand(item, open) {
    if (!item.hasAttribute("aria-expanded")) return;
    let group = item.querySelector(":scope > .children");
    if (open && !group) {
      group = el("div", "children");
      group.setAttribute("role", "group");
      const level = +item.getAttribute("aria-level") + 1;
      for (const kid of children(item.dataset.id)) group.append(makeItem(kid, level));
      item.append(group);
    }
    if (group) group.hidden = !open;
    item.setAttribute("aria-expanded", String(open));
    item.querySelector(":scope > .box > .toggle").textContent = open ? "\u2212" : "+";
    drawSkips();
  }
  const toggle = (item) => expand(item, item.getAttribute("aria-expanded") !== "true");

  const FIELDS = [["path", "module"], ["type", "layer"], ["channels", "channels"], ["kernel", "kernel"], ["stride", "stride"], ["groups", "groups"],
    ["se", "SE width"], ["shape", "output shape"], ["params", "parameters"], ["macs", "MACs"], ["activations", "activation memory"],
    ["rf", "receptive field"], ["voxelMm", "voxel (mm)"], ["extentMm", "extent (mm)"], ["rfMm", "receptive field (mm)"], ["line", "spec line"]];
  function select(item) {
    for (const old of tree.querySelectorAll(".item.selected")) { old.classList.remove("selected"); old.setAttribute("aria-selected", "false"); }
    item.classList.add("selected");
    item.setAttribute("aria-selected", "true");
    focus(item);
    const d = describe(item.dataset.id), f = d.figures;
    document.getElementById("panel-title").textContent = d.label + (d.repeats ? "  x " + d.repeats : "");
    const shown = {
      ...f, shape: shape(f.shape), params: count(f.params), macs: count(f.macs) + " (" + human(f.macs) + ")",
      activations: f.activations === undefined ? "per block (not per layer)" : bytes(4 * f.activations) + " float32 in training (" + count(f.activations) + " values)",
      rf: f.rf === undefined ? "per block (not per layer)" : axes(f.rf) + " input pixels", line: f.line || "unknown (not lowered from a spec file)",
    };
    const list = document.getElementById("panel-fields");
    list.replaceChildren();
    for (const [key, title] of FIELDS) {
      if (shown[key] === undefined) continue;
      const dd = el("dd", null, shown[key]);
      dd.dataset.field = key;
      list.append(el("dt", null, title), dd);
    }
  }

  function focus(item) {
    for (const other of tree.querySelectorAll('.item[tabindex="0"]')) other.tabIndex = -1;
    item.tabIndex = 0;
    item.focus({ preventScroll: true });
    item.scrollIntoView({ block: "nearest" });
  }

  // A U-Net's skips: a dashed arc from the encoder stage whose map a decoder level joins to that level.
  const svg = document.getElementById("skips");
  function drawSkips() {
    const NS = "http://www.w3.org/2000/svg", frame = document.getElementById("network").getBoundingClientRect();
    svg.replaceChildren();
    if (!view.rows.some((r) => r.skip)) return;
    // past every box drawn, so that an opened stage's blocks and layers stay readable
    const right = Math.max(...visible().map((i) => i.querySelector(":scope > .box").getBoundingClientRect().right)) - frame.left;
    let k = 0;
    for (const r of view.rows) {
      if (r.skip === null || r.skip === undefined) continue;
      const from = items.get("row:" + r.skip), to = items.get("row:" + r.name);
      if (!from || !to) continue;
      const a = from.querySelector(":scope > .box").getBoundingClientRect(), b = to.querySelector(":scope > .box").getBoundingClientRect();
      const y1 = a.top + a.height / 2 - frame.top, y2 = b.top + b.height / 2 - frame.top;
      const x1 = a.right - frame.left, x2 = b.right - frame.left, bend = right + 18 + 9 * k++;
      const path = document.createElementNS(NS, "path");
      path.setAttribute("d", `M${x1},${y1} H${bend - 6} Q${bend},${y1} ${bend},${y1 + 6} V${y2 - 6} Q${bend},${y2} ${bend - 6},${y2} H${x2}`);
      svg.append(path);
    }
  }

  // ------------------------------------------------------------------ keyboard
  const visible = () => [...tree.querySelectorAll(".item")].filter((i) => !i.closest(".children[hidden]"));
  tree.addEventListener("keydown", (event) => {
    const item = event.target.closest(".item");
    if (!item) return;
    const all = visible(), at = all.indexOf(item), open = item.getAttribute("aria-expanded");
    let next = null;
    switch (event.key) {
      case "ArrowDown": next = all[at + 1]; break;
      case "ArrowUp": next = all[at - 1]; break;
      case "Home": next = all[0]; break;
      case "End": next = all[all.length - 1]; break;
      case "ArrowRight": if (open === "false") expand(item, true); else if (open === "true") next = all[at + 1]; break;
      case "ArrowLeft": if (open === "true") expand(item, false); else next = item.parentElement.closest(".item"); break;
      case "Enter": case " ": if (open) toggle(item); select(item); break;
      default: return;
    }
    event.preventDefault();
    if (next) select(next);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && document.activeElement !== search) { event.preventDefault(); search.focus(); search.select(); }
  });

  // ------------------------------------------------------------------ search: a module path opens everything above it
  const search = document.getElementById("search"), status = document.getElementById("search-status");
  const where = new Map(); // module path -> the ids to open, outermost first, then the item itself
  for (const r of view.rows) {
    const rowId = "row:" + r.name, alias = /^\d+$/.test(r.name) ? "stages." + r.name : r.name.replace(/^decoder\.(\d+)$/, "decoder.levels.$1");
    where.set(alias, [rowId]);
    for (const kid of children(rowId)) {
      const path = kid.slice(kid.indexOf(":") + 1);
      if (kid.startsWith("layer:")) { where.set(path, [rowId, kid]); continue; }
      const parts = kid.startsWith("run:") ? children(kid).map((p) => [kid, p]) : [[null, kid]];
      for (const [run, part] of parts) {
        const partPath = part.slice(5), above = run ? [rowId, run] : [rowId];
        if (!where.has(partPath)) where.set(partPath, [...above, part]);
        for (const layer of view.parts[partPath].layers) where.set(layer, [...above, part, "layer:" + layer]);
      }
    }
  }
  const options = document.getElementById("paths");
  for (const path of where.keys()) { const o = document.createElement("option"); o.value = path; options.append(o); }
  function find(query) {
    const q = query.trim();
    if (!q) return false;
    const path = where.has(q) ? q : [...where.keys()].find((p) => p.toLowerCase().includes(q.toLowerCase()));
    if (!path) { status.textContent = "no layer named " + q; return false; }
    status.textContent = "";
    const ids = where.get(path);
    for (const id of ids.slice(0, -1)) expand(items.get(id), true);
    select(items.get(ids[ids.length - 1]));
    return true;
  }
  document.getElementById("find").addEventListener("submit", (event) => { event.preventDefault(); find(search.value); });
  search.addEventListener("keydown", (event) => { if (event.key === "Escape") { const s = tree.querySelector('.item[tabindex="0"]'); if (s) s.focus(); } });

  // ------------------------------------------------------------------ the page
  document.title = info.name + " \u00b7 archc";
  document.getElementById("title").textContent = info.name;
  const scaling = info.scaling.preset !== null ? "preset " + info.scaling.preset : info.scaling.phi !== null ? "phi " + info.scaling.phi : "unscaled";
  document.getElementById("totals").textContent = info.dims + "D, input " + shape(info.input_shape) + ", " + scaling + " \u00b7 " + count(info.params) +
    " parameters \u00b7 " + human(info.macs) + " MACs \u00b7 " + bytes(info.activation_bytes.fp32) + " activations per sample (float32, training)" +
    (data.millimetres ? " \u00b7 at " + data.millimetres.spacing + " mm voxels" : "") +
    (info.warnings.length ? " \u00b7 " + info.warnings.length + " warning(s): " + info.warnings.join("; ") : "");
  for (const r of view.rows) tree.append(makeItem("row:" + r.name, 1));
  tree.firstElementChild.tabIndex = 0;
  drawSkips();
  window.addEventListener("resize", drawSkips);
  // For tests and the curious: the milliseconds this script took to draw the page, and the verbs the page offers.
  window.archcView = { startupMs: performance.now() - started, find, expand: (id, open = true) => expand(items.get(id), open), select: (id) => select(items.get(id)) };
})();
