// Sparklines of a broadcaster's recent fetches (GET /api/fetches, 10 s buckets): a bar
// per bucket, green for answers, red for failures on top, and the mean latency as a line.
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
    const most = Math.max(1, ...buckets.map((b) => b.ok + b.failed));
    const slowest = Math.max(0.001, ...buckets.map((b) => b.latencyMeanSeconds || 0));
    let points = "";
    buckets.forEach((b, i) => {
      const okH = (b.ok / most) * (H - 2), failH = (b.failed / most) * (H - 2);
      if (b.ok) root.append(svg("rect", { x: (i * step).toFixed(1), y: (H - okH).toFixed(1), width: Math.max(1, step - 0.5).toFixed(1), height: okH.toFixed(1), class: "ok" }));
      if (b.failed) root.append(svg("rect", { x: (i * step).toFixed(1), y: (H - okH - failH).toFixed(1), width: Math.max(1, step - 0.5).toFixed(1), height: failH.toFixed(1), class: "failed" }));
      if (b.latencyMeanSeconds !== null) points += `${(i * step + step / 2).toFixed(1)},${(H - 1 - (b.latencyMeanSeconds / slowest) * (H - 4)).toFixed(1)} `;
    });
    if (points) root.append(svg("polyline", { points: points.trim(), class: "latency" }));
    const failed = buckets.reduce((n, b) => n + b.failed, 0), total = buckets.reduce((n, b) => n + b.ok + b.failed, 0);
    const title = svg("title");
    title.textContent = `${total} fetches, ${failed} failed, over ${buckets.length} buckets; slowest mean ${(slowest * 1000).toFixed(0)} ms`;
    root.append(title);
    return root;
  }

  return { render };
})();
