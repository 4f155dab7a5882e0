// The operator page: broadcasters with their health, load and recent fetches, the fleet on a map,
// streams with their renditions (each playable here) and a timeline of what the edge publishes for
// each live one; refreshed every 2 s. The admin token comes from the page's fragment (#token=...,
// never sent to the server by the browser) or the form, and stays in this tab's session storage.
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const TIMELINES = 4; // live streams whose health is read every refresh
  const FAILING_FOR_S = 15; // a failed last fetch younger than this shows the broadcaster down
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac", "#e15759"];
  let names = []; // every broadcaster known, sorted: their colours
  const form = document.getElementById("token-form");
  const errorBox = document.getElementById("error");
  let hls = null;

  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromFragment) {
    sessionStorage.setItem("edge-admin-token", fromFragment);
    history.replaceState(null, "", location.pathname);
  }
  const token = () => sessionStorage.getItem("edge-admin-token");

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("edge-admin-token", document.getElementById("token").value.trim());
    refresh();
  });

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" });
    if (response.status === 401 || response.status === 403) throw Object.assign(new Error("token refused"), { auth: true });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text === undefined || text === null ? "–" : String(text);
    if (className) td.className = className;
    return td;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Date.now() / 1000 - seconds);
    return s < 90 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
  }

  function colour(name) {
    let i = names.indexOf(name);
    if (i < 0) { names = [...names, name].sort(); i = names.indexOf(name); }
    return PALETTE[i % PALETTE.length];
  }

  // A broadcaster that answered is up, even without what was asked (liveness.answered: below 500).
  const answered = (last) => last.status !== null && last.status < 500;

  // What the map shows: the registry's verdict, or down as soon as this node's fetches fail.
  function status(b, fetches, now) {
    if (b.state === "draining") return { status: "draining", why: "draining" };
    const health = b.health || {};
    if (!health.healthy) return { status: "down", why: health.reason };
    const last = fetches && fetches.lastFetch;
    if (last && !answered(last) && now - last.at < FAILING_FOR_S) {
      return { status: "down", why: `last fetch: ${last.outcome}` };
    }
    return { status: "up", why: "" };
  }

  function utilisation(b) {
    const load = b.load || {};
    if (b.capacity && load.activeStreams !== null && load.activeStreams !== undefined) return load.activeStreams / b.capacity;
    return load.cpu || 0;
  }

  function renderBroadcasters(list, fetchHealth) {
    const body = document.querySelector("#broadcasters tbody");
    body.replaceChildren();
    for (const b of list) {
      const row = body.insertRow();
      row.dataset.name = b.name;
      cell(row, b.name);
      const health = b.health || {};
      const label = b.state === "draining" ? "draining" : health.healthy ? "up" : "down";
      cell(row, `${label}${health.reason && health.reason !== "ok" ? ` (${health.reason})` : ""}`,
        label === "up" ? "up" : label === "draining" ? "draining" : "down");
      cell(row, b.region);
      const load = b.load || {};
      const parts = [];
      if (load.activeStreams !== null && load.activeStreams !== undefined) parts.push(`${load.activeStreams}${b.capacity ? "/" + b.capacity : ""} streams`);
      if (load.cpu !== null && load.cpu !== undefined) parts.push(`cpu ${(load.cpu * 100).toFixed(0)}%`);
      cell(row, parts.join(", ") || "–");
      cell(row, age(b.lastHeartbeat));
      cell(row, (b.streams || []).length);
      const fetches = (fetchHealth.broadcasters || {})[b.name];
      row.insertCell().append(EdgeSparkline.render(fetches ? fetches.buckets : []));
      const last = fetches && fetches.lastFetch;
      cell(row, last ? `${last.outcome}${last.status && last.status !== 200 ? " " + last.status : ""}, ${(last.latencySeconds * 1000).toFixed(0)} ms, ${age(last.at)}` : "–",
        !last ? "muted" : last.outcome === "ok" ? "up" : answered(last) ? "muted" : "down");
      cell(row, b.address, "muted");
    }
  }

  function play(stream, rendition) {
    const video = document.getElementById("video");
    document.getElementById("player").hidden = false;
    document.getElementById("playing").textContent = `${stream.name} · ${rendition || "all renditions"}`;
    const source = rendition ? stream.renditions[rendition] : stream.playbackUrl;
    if (hls) hls.destroy();
    if (typeof Hls !== "undefined" && Hls.isSupported()) {
      hls = new Hls();
      hls.loadSource(source);
      hls.attachMedia(video);
    } else {
      video.src = source;
    }
    video.play().catch(() => {});
  }

  let defaultMode = "direct";

  function renderStreams(list) {
    const body = document.querySelector("#streams tbody");
    body.replaceChildren();
    for (const s of list) {
      const row = body.insertRow();
      cell(row, s.name);
      cell(row, s.ended ? "ended" : "live", s.ended ? "muted" : "up");
      cell(row, (s.segmentMode || defaultMode) + (s.record ? " · recording" : ""));
      const td = row.insertCell();
      const all = document.createElement("button");
      all.textContent = "play";
      all.addEventListener("click", () => play(s, null));
      td.append(all);
      for (const name of Object.keys(s.renditions)) {
        const button = document.createElement("button");
        button.textContent = name;
        button.addEventListener("click", () => play(s, name));
        td.append(" ", button);
      }
      cell(row, new Date(s.createdAt).toLocaleString());
      cell(row, s.id, "muted");
    }
  }

  async function renderMap(list, fetchHealth, viewer, streams) {
    const now = fetchHealth.at || Date.now() / 1000;
    const streamNames = new Map(streams.map((s) => [s.id, s.name]));
    const fleet = list.map((b) => ({
      name: b.name, latitude: b.latitude, longitude: b.longitude, load: utilisation(b),
      streams: (b.streams || []).map((id) => streamNames.get(id) || id.slice(0, 8)),
      ...status(b, (fetchHealth.broadcasters || {})[b.name], now),
    }));
    await EdgeFleetMap.render(document.getElementById("fleet-map"), fleet, viewer);
  }

  async function renderTimelines(streams) {
    const box = document.getElementById("timelines");
    const live = streams.filter((s) => !s.ended).slice(0, TIMELINES);
    const healths = await Promise.all(live.map((s) => api(`/api/stream/${s.id}/health`).catch(() => null)));
    const kept = new Set();
    live.forEach((s, i) => {
      if (!healths[i]) return;
      kept.add(s.id);
      let section = box.querySelector(`.timeline[data-stream="${s.id}"]`);
      if (!section) {
        section = document.createElement("div");
        section.className = "timeline";
        section.dataset.stream = s.id;
        box.append(section);
      }
      EdgeTimeline.render(section, healths[i], colour);
    });
    for (const section of box.querySelectorAll(".timeline")) if (!kept.has(section.dataset.stream)) section.remove();
    document.getElementById("legend").replaceChildren(...names.map((name) => {
      const key = document.createElement("span");
      key.className = "swatch";
      key.style.background = colour(name);
      key.textContent = name;
      return key;
    }));
  }

  async function refresh() {
    if (!token()) { form.hidden = false; return; }
    try {
      const [broadcasters, streams, store, fetchHealth, viewer] = await Promise.all(
        [api("/api/broadcasters"), api("/api/stream?limit=50"), api("/api/segment-store"),
          // The map and sparklines do without these when they fail; the tables do not.
          api("/api/fetches").catch(() => ({})), api("/api/viewer").catch(() => null)]);
      const list = Array.isArray(broadcasters) ? broadcasters : broadcasters.broadcasters || [];
      names = [...new Set([...names, ...list.map((b) => b.name)])].sort();
      defaultMode = store.defaultMode || "direct";
      document.getElementById("segment-store").textContent = store.store
        ? `segment store: ${store.store}, ${store.objects} segments, ${(store.bytes / 1e6).toFixed(1)} MB` : "";
      renderBroadcasters(list, fetchHealth);
      renderStreams(streams);
      await Promise.all([renderMap(list, fetchHealth, viewer, streams), renderTimelines(streams)]);
      errorBox.textContent = "";
      form.hidden = true;
      document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      errorBox.textContent = err.auth ? "The admin token was refused." : `Cannot reach the edge: ${err.message}`;
      if (err.auth) form.hidden = false;
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
