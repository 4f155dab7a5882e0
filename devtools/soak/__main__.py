"""Command line of the chaos soak.

    python -m devtools.soak --minutes 2 --streams 3 --seed 7 --nodes 2

Exit status: 0 no violation, 1 violations, 2 the soak could not start, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys

from devtools.soak.run import Report, SetupError, Soak, SoakConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devtools.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="how long the faults run (default 2)")
    p.add_argument("--streams", type=int, default=3, help="live streams, 3 renditions each (default 3)")
    p.add_argument("--seed", type=int, help="seed of the fault script (default: random, printed)")
    p.add_argument("--nodes", type=int, choices=(1, 2), default=1,
                   help="edge nodes: 1 on SQLite, 2 on a Redis of the soak's own (default 1)")
    p.add_argument("--broadcasters", type=int, default=3, help="fault-injecting broadcasters (default 3)")
    p.add_argument("--no-faults", action="store_true", help="clean streams only (the checker's baseline)")
    p.add_argument("--segment-seconds", type=float, default=1.0, help="segment length (default 1: time-compressed)")
    p.add_argument("--details", type=int, default=5, help="violations shown in full (default 5)")
    p.add_argument("--keep-logs", action="store_true", help="keep the edge logs even when the soak passes")
    p.add_argument("--log-level", choices=("debug", "info", "warning"), default="info",
                   help="the edge nodes' log level (debug: every ask and publish of every feed)")
    return p


async def _run(soak: Soak) -> Report:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await soak.run()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    try:
        config = SoakConfig(
            minutes=args.minutes, streams=args.streams, seed=seed, nodes=args.nodes, broadcasters=args.broadcasters,
            faults=not args.no_faults, segment_s=args.segment_seconds, details=args.details, keep_workdir=args.keep_logs,
            log_level=args.log_level,
        )
    except ValueError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    soak = Soak(config, out=sys.stdout)
    try:
        report = asyncio.run(_run(soak))
    except (KeyboardInterrupt, asyncio.CancelledError):
        report = soak.report()
    except SetupError as exc:
        print(f"soak: could not start: {exc}", file=sys.stderr)
        return 2
    finally:
        soak.stop_processes()  # already done unless the event loop itself failed
    print(report.render(), flush=True)
    if report.interrupted:
        return 130
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
