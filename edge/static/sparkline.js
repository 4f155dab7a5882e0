// Sparklines of a broadcaster's recent fetches (GET /api/fetches, 10 s buckets): a bar per
// bucket, green for answers, amber for HTTP errors (answered, not with what was asked), red for no
// answer on top, and the mean latency as a line.
"use strict";
window.EdgeSparkline = (function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 180, H = 28;

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function render(buckets) {
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "sparkline" });
    if (!buckets || !buckets.length) return root;
    const step = W / buckets.length;
    const most = Math.max(1, ...buckets.map((b) => b.ok + b.errors + b.failed));
    const slowest = Math.max(0.001, ...buckets.map((b) => b.latencyMeanSeconds || 0));
    let points = "";
    buckets.forEach((b, i) => {
      let top = H;
      for (const kind of ["ok", "errors", "failed"]) {  // stacked, bottom up
        const h = (b[kind] / most) * (H - 2);
        if (!h) continue;
        top -= h;
        root.append(svg("rect", { x: (i * step).toFixed(1), y: top.toFixed(1), width: Math.max(1, step - 0.5).toFixed(1), height: h.toFixed(1), class: kind }));
      }
      if (b.latencyMeanSeconds !== null) points += `${(i * step + step / 2).toFixed(1)},${(H - 1 - (b.latencyMeanSeconds / slowest) * (H - 4)).toFixed(1)} `;
    });
    if (points) root.append(svg("polyline", { points: points.trim(), class: "latency" }));
    const sum = (kind) => buckets.reduce((n, b) => n + b[kind], 0);
    const failed = sum("failed"), errors = sum("errors"), total = sum("ok") + errors + failed;
    const title = svg("title");
    title.textContent = `${total} fetches, ${errors} HTTP errors, ${failed} unanswered, over ${buckets.length} buckets; slowest mean ${(slowest * 1000).toFixed(0)} ms`;
    root.append(title);
    return root;
  }

  return { render };
})();
