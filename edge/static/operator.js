// The operator page: broadcasters with their health and load, streams with their renditions, each
// playable here; refreshed every 2 s. The admin token comes from the page's fragment (#token=...,
// never sent to the server by the browser) or the form, and stays in this tab's session storage.
"use strict";
(function () {
  const REFRESH_MS = 2000;
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

  function renderBroadcasters(list) {
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

  async function refresh() {
    if (!token()) { form.hidden = false; return; }
    try {
      const [broadcasters, streams, store] = await Promise.all(
        [api("/api/broadcasters"), api("/api/stream?limit=50"), api("/api/segment-store")]);
      defaultMode = store.defaultMode || "direct";
      document.getElementById("segment-store").textContent = store.store
        ? `segment store: ${store.store}, ${store.objects} segments, ${(store.bytes / 1e6).toFixed(1)} MB` : "";
      renderBroadcasters(Array.isArray(broadcasters) ? broadcasters : broadcasters.broadcasters || []);
      renderStreams(streams);
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
