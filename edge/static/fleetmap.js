// The fleet on a world outline (world-atlas's land-110m, from npm, served by the edge; drawn here as
// SVG in an equirectangular projection: no tiles, nothing from elsewhere). Broadcasters sit at their
// coordinates, coloured by health, sized by load, labelled with the streams they carry; the viewer
// sits where the edge locates this browser, with the order GET /api/broadcaster would give it.
"use strict";
window.EdgeFleetMap = (function () {
  const W = 960, H = 480;
  const SVG = "http://www.w3.org/2000/svg";
  let land = null;

  const x = (lon) => ((lon + 180) / 360) * W;
  const y = (lat) => ((90 - lat) / 180) * H;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A ring as path data; a step of more than half the world is the antimeridian: lift the pen.
  function ringPath(ring) {
    let d = "", previous = null;
    for (const [lon, lat] of ring) {
      const jump = previous === null || Math.abs(lon - previous) > 180;
      d += `${jump ? "M" : "L"}${x(lon).toFixed(1)},${y(lat).toFixed(1)}`;
      previous = lon;
    }
    return d + "Z";
  }

  async function load() {
    if (land) return land;
    const response = await fetch("/static/land-110m.json", { cache: "force-cache" });
    if (!response.ok) throw new Error("world outline: HTTP " + response.status + " (run ./install.sh)");
    const topology = await response.json();
    const feature = topojson.feature(topology, topology.objects.land);
    const parts = [];
    for (const f of feature.features || [feature]) {
      const g = f.geometry;
      const polygons = g.type === "Polygon" ? [g.coordinates] : g.coordinates;
      for (const polygon of polygons) for (const ring of polygon) parts.push(ringPath(ring));
    }
    land = parts.join("");
    return land;
  }

  // `fleet`: [{name, latitude, longitude, status: up|down|draining, load: 0..1, streams: [names], why}]
  // `viewer`: GET /api/viewer's answer, or null.
  async function render(box, fleet, viewer) {
    const outline = await load();
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "fleet-map", role: "img" });
    root.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "sea" }));
    root.append(svg("path", { d: outline, class: "land" }));
    const order = new Map(((viewer && viewer.order) || []).map((o, i) => [o.name, i + 1]));
    const here = viewer && viewer.location;
    if (here && viewer.order && viewer.order.length) {
      const firstName = viewer.order[0].name;
      const target = fleet.find((b) => b.name === firstName && b.latitude !== null && b.latitude !== undefined);
      if (target) {
        root.append(svg("line", { x1: x(here.longitude), y1: y(here.latitude), x2: x(target.longitude), y2: y(target.latitude), class: "handout" }));
      }
    }
    const unplaced = [];
    for (const b of fleet) {
      if (b.latitude === null || b.latitude === undefined || b.longitude === null || b.longitude === undefined) {
        unplaced.push(b.name);
        continue;
      }
      const g = svg("g", { class: `marker ${b.status}`, "data-name": b.name });
      const r = 5 + 10 * Math.min(1, Math.max(0, b.load || 0));
      g.append(svg("circle", { cx: x(b.longitude), cy: y(b.latitude), r: r.toFixed(1) }));
      const rank = order.get(b.name);
      const label = `${rank ? rank + ". " : ""}${b.name}${b.streams.length ? " · " + b.streams.join(", ") : ""}`;
      g.append(svg("text", { x: x(b.longitude) + r + 3, y: y(b.latitude) + 4 }, label));
      g.append(svg("title", {}, `${b.name}: ${b.status}${b.why ? " (" + b.why + ")" : ""}\nload ${((b.load || 0) * 100).toFixed(0)}%\n` +
        `streams: ${b.streams.join(", ") || "none"}${rank ? `\nposition ${rank} in GET /api/broadcaster from here` : ""}`));
      root.append(g);
    }
    if (here) {
      const g = svg("g", { class: "viewer" });
      const cx = x(here.longitude), cy = y(here.latitude);
      g.append(svg("path", { d: `M${cx - 6},${cy}L${cx + 6},${cy}M${cx},${cy - 6}L${cx},${cy + 6}` }));
      g.append(svg("text", { x: cx - 8, y: cy + 20, "text-anchor": "end" }, "you"));
      root.append(g);
    }
    const caption = document.createElement("p");
    caption.className = "muted map-caption";
    const orderText = viewer && viewer.order && viewer.order.length
      ? `GET /api/broadcaster from here: ${viewer.order.map((o) => o.name + (o.distanceKm !== null ? ` (${Math.round(o.distanceKm)} km)` : "")).join(" → ")}`
      : "GET /api/broadcaster from here: no broadcaster can take a stream";
    caption.textContent = `${here ? `You: ${here.city || ""}${here.country ? " " + here.country : ""} (${here.source})` : "You: not located (no CDN headers, no city database match)"}. ` +
      orderText + (unplaced.length ? `. Without coordinates: ${unplaced.join(", ")}` : "");
    box.replaceChildren(root, caption);
  }

  return { render };
})();
