"""hls.js in low-latency mode plays a merged stream through the edge's blocking playlist reloads and
Playlist Delta Updates (whole segments: no partial segments are published)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from devtools.demo import Demo
from tests.conftest import free_port
from tests.e2e.browser import Browser

# Longer than CAN-SKIP-UNTIL (6 target durations of 3 s), so that delta updates leave something out.
WINDOW_S = 30.0


async def test_hlsjs_low_latency_mode_plays_with_blocking_reloads_and_delta_updates(tmp_path: Path) -> None:
    demo = Demo(port=free_port(), data_dir=str(tmp_path / "data"), switch_every=4, playlist_window=WINDOW_S)
    browser = Browser(tmp_path / "chromium")
    loop = asyncio.get_running_loop()
    try:
        await demo.start()
        started = loop.time()
        await browser.open(f"{demo.url}/play/{demo.stream_id}?lowLatency=1")
        positions: list[float] = []
        state: dict = {}
        while True:
            raw = await browser.evaluate("JSON.stringify(window.playerState || null)")
            state = json.loads(raw) if raw not in (None, "null") else {}
            if state:
                assert state["fatal"] is None, f"hls.js fatal error: {state['fatal']} ({state['errors']})"
                positions.append(state["currentTime"])
            played = positions[-1] - positions[0] if positions else 0.0
            if state.get("deltaUpdates", 0) >= 3 and state.get("blockingReloads", 0) >= 8 and played >= 16:
                break
            assert loop.time() - started < 100, f"not there in time: played {played:.1f} s, state {state}"
            await asyncio.sleep(0.5)
        assert state["lowLatencyMode"] is True
        assert state["deltaFailed"] == 0
        assert all(b >= a for a, b in zip(positions, positions[1:])), "playback went backwards"
    finally:
        await browser.close()
        await demo.stop()
