"""A self-contained static gallery (``gallery/index.html``): per image, ground truth | measurement | each method's
restoration with its per-image metrics; filter by task and method, sort by a metric or by PAG's gain.

The images are *copied* into ``gallery/img/`` (downscaled to at most ``max_size`` px), so the folder works from a
file:// URL and keeps working when copied elsewhere; the page has no external resource (inline CSS and JS, data
as inline JSON).
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from .tables import HIGHER_IS_BETTER, Table, _title, per_image_metrics


def _copy_image(source: Path, target: Path, max_size: int) -> tuple[Path, int] | None:
    """Copy a PNG (downscaled when larger than ``max_size``); (target, width) or None when there is none."""
    if not source.is_file():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        width, height = image.size
        if max(width, height) > max_size:
            image = image.convert("RGB")
            image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
            image.save(target)
            width = image.size[0]
        else:
            shutil.copyfile(source, target)
    return target, width


def _round(value: Any) -> Any:
    return round(value, 5) if isinstance(value, float) else value


def _without_pag(method: tuple) -> dict[str, Any]:
    return {k: v for k, v in method if not k.startswith("pag")}


def pag_pairs(table: Table) -> list[tuple[tuple, tuple]]:
    """(PAG method, the same settings without PAG) for every PAG method of the table that has such a baseline."""
    plain = [m for m in table.methods if dict(m)["pag"] == "off"]
    return [
        (method, base)
        for method in table.methods
        if dict(method)["pag"] != "off"
        for base in plain
        if _without_pag(base) == _without_pag(method)
    ]


def gallery_data(tables: list[Table], out: Path, max_images: int = 50, max_size: int = 256) -> dict[str, Any]:
    """Copy the images and return what the page shows (paths relative to ``out``)."""
    methods, gains, items = [], [], []
    metrics: list[str] = []
    for t, table in enumerate(tables):
        ids = {m: f"t{t}m{i}" for i, m in enumerate(table.methods)}
        for method in table.methods:
            methods.append({"id": ids[method], "label": table.labels[method], "table": table.name})
        per_image = per_image_metrics(list(table.cells.values()))
        metrics += [m for m in table.metrics if m in per_image and m not in metrics]
        for method, base in pag_pairs(table):
            gains.append({"method": ids[method], "baseline": ids[base], "label": table.labels[method]})
        for task in table.tasks:
            names: dict[str, int | None] = {}
            for method in table.methods:
                cell = table.cells.get((method, task))
                for name, row in cell.rows.items() if cell else ():
                    if row.get("status") in ("done", "failed"):
                        names.setdefault(name, row.get("index"))
            chosen = sorted(names, key=lambda n: (names[n] is None, names[n] or 0, n))[:max_images]
            for name in chosen:
                item: dict[str, Any] = {"table": table.name, "task": task, "name": name, "index": names[name]}
                results = {}
                for method in table.methods:
                    cell = table.cells.get((method, task))
                    row = cell.rows.get(name) if cell else None
                    if row is None:
                        continue
                    folder = Path(row["_folder"])
                    entry = {"status": row.get("status"), "error": row.get("error") or ""}
                    entry.update({m: _round(row.get(m)) for m in metrics})
                    rel = Path("img") / table.name / task / ids[method] / f"{name}.png"
                    copied = _copy_image(folder / "recon" / f"{name}.png", out / rel, max_size)
                    if copied:
                        entry["src"], entry["width"] = rel.as_posix(), copied[1]
                    results[ids[method]] = entry
                    for kind in ("label", "input"):
                        if kind not in item:
                            rel = Path("img") / table.name / task / kind / f"{name}.png"
                            copied = _copy_image(folder / kind / f"{name}.png", out / rel, max_size)
                            if copied:
                                item[kind], item[f"{kind}_width"] = rel.as_posix(), copied[1]
                item["results"] = results
                items.append(item)
    return {
        "methods": methods,
        "metrics": [{"id": m, "title": _title(m), "higher": HIGHER_IS_BETTER.get(m, True)} for m in metrics],
        "gains": gains,
        "items": items,
    }


def write_gallery(tables: list[Table], out: Path, max_images: int = 50, max_size: int = 256, title: str = "") -> Path:
    """``out/index.html`` and ``out/img/``; returns the page's path."""
    shutil.rmtree(out / "img", ignore_errors=True)  # no stale images of an earlier report
    out.mkdir(parents=True, exist_ok=True)
    data = gallery_data(tables, out, max_images, max_size)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = PAGE.replace("__TITLE__", html.escape(title or "Sweep gallery")).replace("__DATA__", payload)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 12px; color: #222; background: #fafafa; }
h1 { font-size: 18px; margin: 0 0 8px; }
#controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; padding: 8px; background: #fff;
  border: 1px solid #ddd; border-radius: 6px; position: sticky; top: 0; z-index: 1; }
#controls label { font-size: 13px; }
#methods label { margin-right: 8px; white-space: nowrap; }
#count { font-size: 13px; color: #555; }
.row { display: flex; gap: 6px; align-items: flex-start; margin: 8px 0; padding: 6px; background: #fff;
  border: 1px solid #e4e4e4; border-radius: 6px; overflow-x: auto; }
.head { flex: 0 0 170px; font-size: 12px; }
.head b { display: block; font-size: 13px; word-break: break-all; }
figure { margin: 0; text-align: center; font-size: 11px; width: 140px; }
figure img { width: 128px; height: auto; border: 1px solid #ccc; background: #eee; }
figure img.pixelated { image-rendering: pixelated; }
figcaption { line-height: 1.25; }
.failed { width: 128px; height: 128px; display: flex; align-items: center; justify-content: center;
  background: #fdd; border: 1px solid #c99; font-size: 11px; overflow: hidden; }
.gain-pos { color: #060; } .gain-neg { color: #a00; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<div id="controls">
  <label>Task <select id="task"></select></label>
  <label>Sort by <select id="sort"></select></label>
  <label><input type="checkbox" id="desc" checked> descending</label>
  <span id="methods"></span>
  <span id="count"></span>
</div>
<div id="rows"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const byId = Object.fromEntries(DATA.methods.map(m => [m.id, m]));
const $ = id => document.getElementById(id);

function option(select, value, text) {
  const o = document.createElement("option"); o.value = value; o.textContent = text; select.appendChild(o);
}
function fmt(v) { return (v === null || v === undefined) ? "n/a" : (Math.abs(v) >= 10 ? v.toFixed(2) : v.toFixed(4)); }

// a gain is positive where PAG helps: higher-better metrics M - B, lower-better B - M
function gain(item, g, metric) {
  const a = item.results[g.method], b = item.results[g.baseline];
  if (!a || !b || a[metric.id] == null || b[metric.id] == null) return null;
  return metric.higher ? a[metric.id] - b[metric.id] : b[metric.id] - a[metric.id];
}

function setup() {
  const groups = [...new Set(DATA.items.map(i => i.table + " / " + i.task))];
  option($("task"), "", "all (" + groups.length + ")");
  groups.forEach(g => option($("task"), g, g));
  option($("sort"), "index", "image index");
  DATA.metrics.forEach((m, k) => DATA.gains.forEach((g, j) =>
    option($("sort"), "gain:" + j + ":" + k, m.title + " gain of " + g.label + " over " + byId[g.baseline].label)));
  DATA.metrics.forEach((m, k) => DATA.methods.forEach(meth =>
    option($("sort"), "value:" + meth.id + ":" + k, m.title + " of " + meth.label)));
  DATA.methods.forEach(m => {
    const l = document.createElement("label"), c = document.createElement("input");
    c.type = "checkbox"; c.checked = true; c.value = m.id; c.className = "method";
    c.addEventListener("change", render);
    l.appendChild(c); l.appendChild(document.createTextNode(" " + m.label)); $("methods").appendChild(l);
  });
  // default: where PAG helps most (first gain, descending); without PAG pairs, image order
  const psnr = Math.max(0, DATA.metrics.findIndex(m => m.id === "psnr"));
  if (DATA.gains.length) $("sort").value = "gain:0:" + psnr; else $("desc").checked = false;
  ["task", "sort", "desc"].forEach(id => $(id).addEventListener("change", render));
  render();
}

function sortKey(item) {
  const s = $("sort").value.split(":");
  if (s[0] === "gain") return gain(item, DATA.gains[+s[1]], DATA.metrics[+s[2]]);
  if (s[0] === "value") { const r = item.results[s[1]]; return r ? r[DATA.metrics[+s[2]].id] : null; }
  return item.index;
}

function figure(src, width, caption, cls) {
  const f = document.createElement("figure");
  if (src) {
    const img = document.createElement("img"); img.src = src; img.alt = caption;
    if (width < 128) img.className = "pixelated";
    f.appendChild(img);
  } else {
    const d = document.createElement("div"); d.className = "failed"; d.textContent = cls || "missing"; f.appendChild(d);
  }
  const c = document.createElement("figcaption"); c.innerHTML = caption; f.appendChild(c);
  return f;
}

function esc(t) { const d = document.createElement("div"); d.textContent = t; return d.innerHTML; }

function render() {
  const task = $("task").value;
  const shown = new Set([...document.querySelectorAll("input.method:checked")].map(c => c.value));
  let items = DATA.items.filter(i => !task || i.table + " / " + i.task === task);
  const desc = $("desc").checked;
  items = items.map(i => [sortKey(i), i]).sort((a, b) => {
    if (a[0] === null && b[0] === null) return a[1].index - b[1].index;
    if (a[0] === null) return 1; if (b[0] === null) return -1;
    return desc ? b[0] - a[0] : a[0] - b[0];
  }).map(p => p[1]);
  const rows = $("rows"); rows.innerHTML = "";
  for (const item of items) {
    const row = document.createElement("div"); row.className = "row"; row.dataset.task = item.task;
    const head = document.createElement("div"); head.className = "head";
    let text = "<b>" + esc(item.name) + "</b>" + esc(item.table + " / " + item.task);
    DATA.gains.forEach(g => { if (!shown.has(g.method)) return;
      DATA.metrics.forEach(m => { const v = gain(item, g, m); if (v === null) return;
        text += "<br><span class='" + (v >= 0 ? "gain-pos" : "gain-neg") + "'>" + m.title + " PAG gain " +
          (v >= 0 ? "+" : "") + fmt(v) + "</span>"; }); });
    head.innerHTML = text; row.appendChild(head);
    row.appendChild(figure(item.label, item.label_width, "ground truth"));
    row.appendChild(figure(item.input, item.input_width, "measurement"));
    for (const m of DATA.methods) {
      if (!shown.has(m.id)) continue;
      const r = item.results[m.id];
      if (!r) { row.appendChild(figure(null, 0, esc(m.label) + "<br>no result", "no result")); continue; }
      let cap = esc(m.label);
      if (r.status === "done") DATA.metrics.forEach(k => { cap += "<br>" + k.title + " " + fmt(r[k.id]); });
      else cap += "<br>" + esc(r.status + (r.error ? ": " + r.error : ""));
      row.appendChild(figure(r.src, r.width, cap, r.status));
    }
    rows.appendChild(row);
  }
  $("count").textContent = items.length + " images";
}
setup();
</script>
</body>
</html>
"""
