// A stream's timeline on the operator page, from GET /api/stream/{id}/health: per rendition a strip
// of the segments published over the last minutes, one column per media sequence number (so the
// renditions, one under the other, line up by MSN and any misalignment shows), coloured by the
// broadcaster that supplied each, with holes (numbers passed over), discontinuities, late arrivals
// and duplicates marked, and any MSN whose renditions carry different numbers outlined. A click on
// a segment shows its URI and where it came from.
"use strict";
window.EdgeTimeline = (function () {
  const MAX_COLUMNS = 180;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Columns shared by every rendition: each MSN once, a hole column before an MSN where any
  // rendition passed numbers over (the merge decides numbers for the whole stream, so all do).
  function columns(renditions) {
    const byMsn = new Map();
    for (const r of renditions) {
      for (const s of r.timeline.length ? r.timeline : r.window) {
        const col = byMsn.get(s.msn) || { msn: s.msn, hole: 0 };
        col.hole = Math.max(col.hole, s.hole || 0);
        byMsn.set(s.msn, col);
      }
    }
    // Renditions publish every number at the same MSN (merge.renditions_agree): a column whose
    // renditions disagree is marked, it would break players switching renditions.
    const numbers = new Map();
    for (const r of renditions) {
      for (const s of r.timeline.length ? r.timeline : r.window) {
        numbers.set(s.msn, (numbers.get(s.msn) || new Set()).add(s.number));
      }
    }
    for (const [msn, seen] of numbers) if (seen.size > 1) byMsn.get(msn).misaligned = true;
    const sorted = [...byMsn.values()].sort((a, b) => a.msn - b.msn).slice(-MAX_COLUMNS);
    const out = [];
    for (const col of sorted) {
      if (col.hole) out.push({ hole: col.hole, before: col.msn });
      out.push({ msn: col.msn, misaligned: !!col.misaligned });
    }
    return out;
  }

  function describe(stream, rendition, s) {
    const lines = [
      `${rendition} · MSN ${s.msn} · ingest #${s.number} · ${s.duration.toFixed(3)} s`,
      `from ${s.broadcaster || "?"}${s.substitute ? ` (stands in with the ${s.substitute} copy)` : ""}`,
      s.uri,
    ];
    const marks = [];
    if (s.discontinuity) marks.push("discontinuity");
    if (s.hole) marks.push(`after a hole of ${s.hole}`);
    if (s.restart) marks.push("ingest restart");
    if (s.duplicate) marks.push(`listed by ${s.copies} broadcasters`);
    if (s.lagSeconds !== null && s.lagSeconds !== undefined) marks.push(`published ${s.lagSeconds.toFixed(2)} s after first listed`);
    if (s.publishedAt) marks.push(`seen published ${new Date(s.publishedAt * 1000).toLocaleTimeString()}`);
    if (marks.length) lines.push(marks.join(" · "));
    return lines;
  }

  // Render `health` into `box` (replacing what was there); `colour(name)` gives a broadcaster's colour.
  function render(box, health, colour) {
    const renditions = health.renditions;
    const lateByNumber = new Map(health.events.filter((e) => e.kind === "late").map((e) => [`${e.rendition}/${e.number}`, e]));
    const cols = columns(renditions);
    const header = el("div", "timeline-head");
    const carriers = health.carriers.map((c) => {
      const last = c.lastFetch;
      return `${c.name}: ${last ? `${last.outcome} ${(last.latencySeconds * 1000).toFixed(0)} ms` : "not fetched"}`;
    });
    const first = renditions.find((r) => r.published) || renditions[0] || {};
    const lag = first.lag || {};
    header.textContent = [
      `${health.name} (${health.segmentMode})`,
      `lease: ${health.leaseHolder || "nobody"}${health.leaseHeldHere ? " (this node)" : ""}`,
      `new segment ${first.secondsSinceNewSegment === null || first.secondsSinceNewSegment === undefined ? "–" : first.secondsSinceNewSegment.toFixed(1) + " s ago"}`,
      `listed→published ${lag.meanSeconds === null || lag.meanSeconds === undefined ? "–" : `${lag.meanSeconds.toFixed(2)} s mean, ${lag.maxSeconds.toFixed(2)} s max`}`,
      `carriers: ${carriers.join(", ") || "none"}`,
      `timeline of node ${health.node}`,
    ].join(" · ");
    const detail = el("pre", "segment-detail");
    detail.hidden = true;
    const strips = el("div", "strips");
    for (const r of renditions) {
      const row = el("div", "strip");
      row.dataset.rendition = r.name;
      row.append(el("span", "strip-label", r.name));
      const cells = el("div", "cells");
      const bySequence = new Map((r.timeline.length ? r.timeline : r.window).map((s) => [s.msn, s]));
      for (const col of cols) {
        if (col.hole) {
          const hole = el("span", "seg hole");
          hole.title = `hole: ${col.hole} number(s) passed over before MSN ${col.before}`;
          const s = bySequence.get(col.before);
          if (s) {
            for (let n = s.number - s.hole; n < s.number; n++) {
              if (lateByNumber.has(`${r.name}/${n}`)) { hole.classList.add("late"); hole.title += ` · #${n} arrived late`; }
            }
          }
          cells.append(hole);
          continue;
        }
        const s = bySequence.get(col.msn);
        const cell = el("span", "seg");
        if (!s) { cell.classList.add("missing"); cells.append(cell); continue; }
        cell.style.background = colour(s.broadcaster);
        cell.dataset.msn = s.msn;
        cell.dataset.broadcaster = s.broadcaster;
        if (col.misaligned) cell.classList.add("misaligned");
        if (s.discontinuity) cell.classList.add("disc");
        if (s.restart) cell.classList.add("restart");
        if (s.duplicate) cell.classList.add("dup");
        if (s.substitute) cell.classList.add("substitute");
        if (s.lagSeconds !== null && s.lagSeconds !== undefined && s.lagSeconds > (r.targetDuration || 2) * 1.5) cell.classList.add("slow");
        cell.title = describe(health.name, r.name, s).join("\n");
        cell.addEventListener("click", () => {
          detail.hidden = false;
          detail.textContent = describe(health.name, r.name, s).join("\n");
          box.dataset.selected = `${r.name}/${s.msn}`;
        });
        cells.append(cell);
      }
      row.append(cells);
      strips.append(row);
    }
    const previous = box.querySelector(".segment-detail");
    if (previous && !previous.hidden) { detail.hidden = false; detail.textContent = previous.textContent; }
    box.replaceChildren(header, strips, detail);
  }

  return { render, columns };
})();
