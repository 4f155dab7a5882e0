"""The `edge` command: `edge serve` runs the service; `edge config-table` prints the options table;
`edge streams ...` and `edge broadcasters ...` are the operator's commands against a running edge."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from edge.settings import Settings, SettingsError, config_table, env_name, flag_name


def _options_epilog() -> str:
    lines = ["options of 'edge serve' (flag / environment variable / default):"]
    for f in Settings.options():
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        lines.append(f"  {flag_name(f.name):22} {env_name(f.name):26} default {default!r}")
        lines.append(f"      {f.metadata['help']}")
    lines.append("A TOML file given with --config may set any option by its name (e.g. port = 9000).")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="Edge service for live-video transcoding networks: stream API, broadcaster "
        "selection and merged live HLS playlists.",
        epilog=_options_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    serve = commands.add_parser(
        "serve", help="run the service", epilog=_options_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for f in Settings.options():
        kwargs: dict = {"dest": f.name, "default": None, "help": f"{f.metadata['help']} [{env_name(f.name)}]"}
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = f.name.upper()
        serve.add_argument(flag_name(f.name), **kwargs)
    commands.add_parser("config-table", help="print the configuration table (Markdown) for the README")
    demo = commands.add_parser(
        "demo", help="run an edge, three reference broadcasters and a live test pattern, and print a player URL",
    )
    demo.add_argument("--port", type=int, default=8080, help="port of the demo's edge (default 8080)")
    demo.add_argument("--data-dir", default="data/demo", help="the demo's own data directory (default data/demo)")
    demo.add_argument("--kill-after", type=float, default=40.0,
                      help="seconds after which the broadcaster in use is killed (default 40)")
    demo.add_argument("--segment-mode", choices=("direct", "redirect", "mirror"), default="mirror",
                      help="segment URIs of the demo's stream (default mirror: a killed broadcaster costs players nothing)")
    # The operator's commands parse their own arguments (edge.opscli, imported only for them).
    for noun, what in (("streams", "list, show, end or delete streams on a running edge"),
                       ("broadcasters", "list, drain, activate or forget broadcasters on a running edge")):
        commands.add_parser(noun, help=what, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("streams", "broadcasters"):  # they parse their own arguments
        from edge.opscli import main as ops_main

        return ops_main(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "config-table":
        print(config_table())
        return 0
    if args.command == "demo":
        # Development tooling: imported only for this command, never by the service itself.
        from devtools.demo import main as demo_main

        return demo_main(args.port, args.data_dir, args.kill_after, args.segment_mode)
    if args.command != "serve":
        parser.print_help()
        return 2
    overrides = {f.name: getattr(args, f.name) for f in Settings.options()}
    try:
        settings = Settings.load(overrides).with_credentials()
    except SettingsError as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


def serve(settings: Settings) -> int:
    """One process, or a supervisor of `--workers` processes sharing the port and the store."""
    from edge.workers import resolved, serve_one, supervise

    settings = resolved(settings)
    return supervise(settings) if settings.workers > 1 else serve_one(settings)


if __name__ == "__main__":
    sys.exit(main())
