// Plays /stream/<id>.m3u8 (the edge's master playlist) with hls.js. The state of playback is kept in
// window.playerState so that an automated browser can read it (the end-to-end tests do).
"use strict";
(function () {
  const streamId = location.pathname.split("/").pop();
  const video = document.getElementById("video");
  const status = document.getElementById("status");
  const stats = document.getElementById("stats");
  const state = (window.playerState = { streamId, fatal: null, errors: [], currentTime: 0, level: null, playing: false });
  document.getElementById("stream").textContent = streamId;
  const source = `/stream/${streamId}.m3u8`;

  function show(text) { status.textContent = text; }

  if (typeof Hls === "undefined") {
    show("hls.js is missing: run ./install.sh on the edge (it installs hls.js with npm)");
    state.fatal = "hls.js missing";
    return;
  }
  if (!Hls.isSupported()) {
    video.src = source; // Safari plays HLS natively
    show("native HLS playback");
    return;
  }
  // ?lowLatency=1: hls.js's low-latency mode, which uses the edge's blocking reloads and delta updates.
  const lowLatencyMode = new URLSearchParams(location.search).get("lowLatency") === "1";
  const hls = new Hls({ liveDurationInfinity: true, lowLatencyMode });
  window.hls = hls;
  Object.assign(state, { lowLatencyMode, blockingReloads: 0, deltaUpdates: 0, deltaFailed: 0 });
  hls.on(Hls.Events.LEVEL_LOADED, (_e, data) => {
    if (data.deliveryDirectives && data.deliveryDirectives.msn !== undefined) state.blockingReloads += 1;
    if (data.details.skippedSegments) state.deltaUpdates += 1;
    if (data.details.deltaUpdateFailed) state.deltaFailed += 1;
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => { show("playing"); video.play().catch(() => {}); });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => { state.level = data.level; });
  hls.on(Hls.Events.ERROR, (_e, data) => {
    state.errors.push(`${data.type}/${data.details}${data.fatal ? " (fatal)" : ""}`);
    if (state.errors.length > 50) state.errors.shift();
    if (!data.fatal) return;
    state.fatal = `${data.type}/${data.details}`;
    show(`fatal error: ${state.fatal}; retrying in 2 s`);
    setTimeout(() => {
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else hls.startLoad();
    }, 2000);
  });
  hls.loadSource(source);
  hls.attachMedia(video);
  video.addEventListener("playing", () => { state.playing = true; });
  setInterval(() => {
    state.currentTime = video.currentTime;
    const buffered = video.buffered.length ? (video.buffered.end(video.buffered.length - 1) - video.currentTime).toFixed(1) : "0";
    stats.textContent = `time ${video.currentTime.toFixed(1)} s · buffer ${buffered} s · level ${state.level} · errors ${state.errors.length}`;
  }, 500);
})();
