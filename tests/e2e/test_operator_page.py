"""The operator page in headless Chromium against a running edge with broadcasters on loopback, checked
for what a person sees: the timeline strip shows a hole where one was made and each broadcaster's
segments in its own colour, the renditions line up, a click shows a segment's URI, a broadcaster
killed turns red on the map, the viewer is placed with the order GET /api/broadcaster would give it;
nothing the page loads comes from beyond loopback. Then the same during `edge demo` (real broadcasters
transcoding with ffmpeg, the ingest moving between them). Screenshots are written to
artifacts/screenshots/ (EDGE_SCREENSHOTS overrides), which CI keeps.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp

from broadcaster_registry.model import Registration
from devtools.demo import Demo
from tests.conftest import ADMIN_TOKEN, free_port
from tests.e2e.browser import Browser
from tests.media import require
from tests.playlists_http.harness import Edge, open_edge, serve_on_loopback

SCREENSHOTS = Path(os.environ.get("EDGE_SCREENSHOTS") or Path(__file__).resolve().parents[2] / "artifacts" / "screenshots")
RENDITIONS = ("source", "P360p30fps16x9")
PLACES = {"fra-1": (50.11, 8.68), "iad-1": (39.04, -77.49)}


async def register(edge: Edge, name: str, stream_id: str) -> None:
    fake = edge.fakes[name]
    latitude, longitude = PLACES[name]
    await edge.svc.store.registry.upsert(name, Registration(
        address=fake.url, latitude=latitude, longitude=longitude, capacity=4, streams=frozenset({stream_id}),
    ), edge.svc.clock())


async def until(browser: Browser, expression: str, timeout: float = 15.0) -> object:
    """The first truthy value of `expression` in the page, polled; fails naming it."""
    deadline = asyncio.get_running_loop().time() + timeout
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = await browser.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.2)
    shown = await browser.evaluate("document.getElementById('error').textContent")
    raise AssertionError(f"not seen in the page within {timeout} s: {expression} (last: {value!r}; page error: {shown!r})")


STRIP = """(() => {
  const strips = [...document.querySelectorAll('.timeline .strip')];
  return JSON.stringify(strips.map((s) => ({
    rendition: s.dataset.rendition,
    cells: [...s.querySelectorAll('.seg')].map((c) => ({
      hole: c.classList.contains('hole'), disc: c.classList.contains('disc'),
      msn: c.dataset.msn === undefined ? null : Number(c.dataset.msn),
      broadcaster: c.dataset.broadcaster || null, colour: getComputedStyle(c).backgroundColor,
    })),
  })));
})()"""


async def test_operator_page_shows_holes_moves_and_a_killed_broadcaster(tmp_path: Path) -> None:
    # The browser connects from loopback, trusted here as a CDN would be: its geo headers place it.
    async for edge in open_edge(tmp_path, heartbeat_ttl=300.0, trusted_proxies=("127.0.0.0/8",)):
        stream = await edge.create_stream(presets=["P360p30fps16x9"])
        sid = stream["id"]
        fra = await edge.add_broadcaster("fra-1")
        iad = await edge.add_broadcaster("iad-1")
        for name in PLACES:
            await register(edge, name, sid)
        for rendition in RENDITIONS:
            fra.add(sid, rendition, 0, 1, 2, 3, 4, 5)
        assert (await edge.playlist(sid)).status_code == 200  # a player: the stream is watched
        feed = edge.svc.playlists.feeds[sid]
        await edge.wait_for(lambda: all(r in feed.states and feed.states[r].next_number == 6 for r in RENDITIONS))
        # The ingest moves to iad-1, and number 6 never arrives anywhere: a hole.
        for rendition in RENDITIONS:
            iad.add(sid, rendition, 7, 8, 9)
        await edge.wait_for(lambda: any(s.number == 9 for s in feed.states["source"].segments), timeout=10)

        async for url in serve_on_loopback(edge):
            browser = Browser(tmp_path / "chromium")
            try:
                await browser.open(f"{url}/#token={ADMIN_TOKEN}")
                await browser.call("Network.enable")
                await browser.call("Network.setExtraHTTPHeaders", {"headers": {  # a viewer in Paris
                    "cf-iplatitude": "48.85", "cf-iplongitude": "2.35", "cf-ipcountry": "FR"}})
                await until(browser, "document.querySelectorAll('.timeline .seg.hole').length >= 2")
                strips = json.loads(await browser.evaluate(STRIP))
                assert [s["rendition"] for s in strips] == list(RENDITIONS)
                for strip in strips:
                    cells = strip["cells"]
                    holes = [i for i, c in enumerate(cells) if c["hole"]]
                    assert len(holes) == 1, strip
                    before, after = cells[holes[0] - 1], cells[holes[0] + 1]
                    # The hole sits between the last fra-1 segment and the first iad-1 one, which
                    # carries the discontinuity; the two broadcasters have different colours.
                    assert before["broadcaster"] == "fra-1" and after["broadcaster"] == "iad-1"
                    assert after["disc"] and not before["disc"]
                    assert before["colour"] != after["colour"]
                    assert {c["colour"] for c in cells if c["broadcaster"] == "fra-1"} == {before["colour"]}
                # One under the other, the renditions line up: same MSN in the same column.
                assert [c["msn"] for c in strips[0]["cells"]] == [c["msn"] for c in strips[1]["cells"]]

                # A click on the first segment after the hole shows its URI and its broadcaster.
                detail = await browser.evaluate("""(() => {
                  const cell = document.querySelector('.timeline .strip[data-rendition="source"] .seg.disc');
                  cell.click();
                  return document.querySelector('.timeline .segment-detail').textContent;
                })()""")
                assert f"{iad.url}/stream/{sid}/source/7.ts" in detail and "from iad-1" in detail
                assert "after a hole of 1" in detail
                await browser.screenshot(SCREENSHOTS / "operator-timeline-hole.png")

                # The viewer on the map, and the order GET /api/broadcaster would give it: fra-1 first.
                caption = str(await until(browser, "document.querySelector('.fleet-map .viewer') && "
                                                   "document.querySelector('.map-caption').textContent"))
                assert "FR" in caption and "fra-1" in caption.split("from here:")[1].split("→")[0]
                assert "1. fra-1" in await browser.evaluate(
                    "document.querySelector('.fleet-map .marker[data-name=\"fra-1\"] text').textContent")
                marker = "document.querySelector('.fleet-map .marker[data-name=\"iad-1\"]')"
                assert await until(browser, f"{marker} && {marker}.classList.contains('up')")
                await iad.stop()  # killed: its playlists stop answering
                await until(browser, f"{marker}.classList.contains('down')")
                fill = await browser.evaluate(f"getComputedStyle({marker}.querySelector('circle')).fill")
                assert fill == "rgb(211, 47, 47)"  # red, as a person sees it
                assert "up" in await browser.evaluate(
                    "document.querySelector('.fleet-map .marker[data-name=\"fra-1\"]').getAttribute('class')")
                await browser.screenshot(SCREENSHOTS / "operator-map-killed.png")

                # Everything the page loaded (scripts, the world outline, the API) came from the edge.
                loaded = await browser.evaluate(
                    "JSON.stringify([location.href, ...performance.getEntriesByType('resource').map((e) => e.name)])")
                urls = json.loads(loaded)
                assert any(u.endswith("/static/land-110m.json") for u in urls)
                assert all(u.startswith(url + "/") for u in urls), [u for u in urls if not u.startswith(url)]
            finally:
                await browser.close()



async def test_during_edge_demo_the_timeline_follows_ingest_moves_and_a_killed_broadcaster_turns_red(tmp_path: Path) -> None:
    """The issue's acceptance: `edge demo` (real broadcasters transcoding with ffmpeg, an ingest moving
    between them), its operator page, its health endpoint."""
    require("ffmpeg")
    demo = Demo(port=free_port(), data_dir=str(tmp_path / "data"), switch_every=3)
    browser = Browser(tmp_path / "chromium")
    try:
        await demo.start()
        assert demo.settings is not None and demo.stream_id is not None
        await browser.open(f"{demo.url}/#token={demo.settings.admin_tokens[0]}")
        # The ingest moves every 3 segments: the strip changes colour where it did.
        suppliers = """(() => {
          const cells = [...document.querySelectorAll('.timeline .strip[data-rendition="source"] .seg[data-broadcaster]')];
          const runs = [];
          for (const c of cells) if (!runs.length || runs[runs.length - 1][0] !== c.dataset.broadcaster)
            runs.push([c.dataset.broadcaster, getComputedStyle(c).backgroundColor]);
          return runs.length >= 3 ? JSON.stringify(runs) : null;
        })()"""
        runs = json.loads(str(await until(browser, suppliers, timeout=60)))
        for (name_a, colour_a), (name_b, colour_b) in zip(runs, runs[1:]):
            assert name_a != name_b and colour_a != colour_b
        await browser.screenshot(SCREENSHOTS / "demo-timeline-moves.png")

        victim = demo.current_broadcaster()
        assert victim is not None
        marker = f"document.querySelector('.fleet-map .marker[data-name=\"{victim.name}\"]')"
        assert await until(browser, f"{marker} && {marker}.classList.contains('up')")
        await demo.kill(victim)
        await until(browser, f"{marker}.classList.contains('down')", timeout=20)
        assert await browser.evaluate(f"getComputedStyle({marker}.querySelector('circle')).fill") == "rgb(211, 47, 47)"
        await browser.screenshot(SCREENSHOTS / "demo-map-killed.png")

        # The health endpoint says the same as JSON: the segments' suppliers are the strip's, and
        # the fetch history says why the map shows the victim red.
        admin = {"Authorization": f"Bearer {demo.settings.admin_tokens[0]}"}
        async with aiohttp.ClientSession(headers=admin) as http:
            async with http.get(f"{demo.url}/api/stream/{demo.stream_id}/health") as response:
                assert response.status == 200
                health = await response.json()
            async with http.get(f"{demo.url}/api/fetches") as response:
                fetches = await response.json()
        source = next(r for r in health["renditions"] if r["name"] == "source")
        names = [s["broadcaster"] for s in source["timeline"]]
        json_runs = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]
        assert [r[0] for r in runs] == json_runs[: len(runs)]
        assert fetches["broadcasters"][victim.name]["lastFetch"]["outcome"] != "ok"
    finally:
        await browser.close()
        await demo.stop()
