"""The operator's command line against a running edge: `edge streams list|show|end|delete` and
`edge broadcasters list|drain|activate|forget`, thin calls of the HTTP API (urllib, no state).

The edge's URL and token come from EDGE_URL and EDGE_ADMIN_TOKEN (or --url and --token); the token
is sent, never printed. Tables for people, `--json` for scripts, and exit codes a script can use:

    0 done    1 not found    2 usage (or no token)    3 edge unreachable or failing (5xx)
    4 credentials refused (401/403)    5 the edge refused the request otherwise (400, 409, 410, 422)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote, urljoin, urlsplit

OK, NOT_FOUND, USAGE, UNREACHABLE, AUTH_REFUSED, REFUSED = 0, 1, 2, 3, 4, 5
DEFAULT_URL = "http://127.0.0.1:8080"
PAGE = 100  # the API's largest page
MAX_PAGES = 1000  # a listing that never ends is the server's bug, not a reason to loop forever


class Failure(Exception):
    """A request that did not do what was asked: the message for stderr, and the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Client:
    url: str
    token: str
    timeout_s: float

    def call(self, method: str, path: str, body: object | None = None) -> tuple[Any, dict[str, str]]:
        """The decoded JSON answer (None for 204) and the headers, or Failure."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(urljoin(self.url + "/", path.lstrip("/")), data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw, headers = response.read(), dict(response.headers.items())
        except urllib.error.HTTPError as exc:
            raise _failure(exc.code, exc.read(), method, path) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Failure(UNREACHABLE, f"{method} {self.url}{path}: edge unreachable: {reason}") from None
        if not raw:
            return None, headers
        try:
            return json.loads(raw), headers
        except ValueError:
            raise Failure(UNREACHABLE, f"{method} {path}: the answer is not JSON") from None


def _failure(status: int, raw: bytes, method: str, path: str) -> Failure:
    try:
        errors = json.loads(raw).get("errors") or []
        why = "; ".join(str(e) for e in errors) or raw.decode("utf-8", "replace")[:200]
    except (ValueError, AttributeError):
        why = raw.decode("utf-8", "replace")[:200]
    message = f"{method} {path}: {status} {why}".rstrip()
    if status == 404:
        return Failure(NOT_FOUND, message)
    if status in (401, 403):
        return Failure(AUTH_REFUSED, message)
    if status >= 500:
        return Failure(UNREACHABLE, message)
    return Failure(REFUSED, message)


# --- what is shown ---------------------------------------------------------------------------


def _when_ms(t: float | None) -> str:
    """A stream's time (milliseconds since the epoch, Livepeer's unit) in UTC."""
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t / 1000))


def _ago(t: float | None, now: float) -> str:
    return "-" if t is None else f"{max(0.0, now - t):.0f}s ago"


def _load(b: dict[str, Any]) -> str:
    load = b.get("load") or {}
    parts = []
    if load.get("activeStreams") is not None:
        capacity = b.get("capacity")
        parts.append(f"{load['activeStreams']}/{capacity if capacity else '?'} streams")
    if load.get("cpu") is not None:
        parts.append(f"cpu {load['cpu']:.0%}")
    return ", ".join(parts) or "-"


def stream_rows(streams: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["ID", "NAME", "STATE", "RENDITIONS", "CREATED", "ENDED"]
    rows = [[s["id"], s.get("name", ""), "ended" if s.get("ended") else "live",
             ",".join(s.get("renditions") or []) or "-", _when_ms(s.get("createdAt")), _when_ms(s.get("endedAt"))]
            for s in streams]
    return header, rows


def broadcaster_rows(broadcasters: list[dict[str, Any]], now: float) -> tuple[list[str], list[list[str]]]:
    header = ["NAME", "STATE", "HEALTH", "REGION", "LOAD", "LAST HEARTBEAT", "ADDRESS"]
    rows = [[b["name"], b.get("state", ""), (b.get("health") or {}).get("reason", ""), b.get("region") or "-",
             _load(b), _ago(b.get("lastHeartbeat"), now) if b.get("source") == "self" else "static",
             b.get("address", "")]
            for b in broadcasters]
    return header, rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def _details(doc: dict[str, Any]) -> str:
    width = max((len(k) for k in doc), default=0)
    return "\n".join(f"{k.ljust(width)}  {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in doc.items())


# --- the commands ----------------------------------------------------------------------------


def _segment(value: str) -> str:
    return quote(value, safe="")


def list_streams(client: Client) -> list[dict[str, Any]]:
    """Every stream, page after page (the API's `Link: rel="next"`)."""
    path: str | None = f"/api/stream?limit={PAGE}"
    streams: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        if path is None:
            return streams
        page, headers = client.call("GET", path)
        streams += page
        path = _next_link(headers.get("Link", ""))
    raise Failure(UNREACHABLE, f"GET /api/stream: more than {MAX_PAGES} pages")


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            link = target.strip().removeprefix("<").removesuffix(">")
            return link if link.startswith("/") else urlsplit(link)._replace(scheme="", netloc="").geturl()
    return None


def run(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    now = time.time()
    show: Callable[[Any], str]
    if args.noun == "streams":
        if args.verb == "list":
            doc: Any = list_streams(client)
            show = lambda d: table(*stream_rows(d))  # noqa: E731
        elif args.verb == "show":
            doc, _ = client.call("GET", f"/api/stream/{_segment(args.id)}")
            show = _details
        elif args.verb == "end":
            doc, _ = client.call("POST", f"/api/stream/{_segment(args.id)}/end")
            show = lambda d: f"stream {d['id']} ended"  # noqa: E731
        else:  # delete
            client.call("DELETE", f"/api/stream/{_segment(args.id)}")
            doc, show = {"id": args.id, "deleted": True}, lambda d: f"stream {d['id']} deleted"
    else:
        if args.verb == "list":
            doc, _ = client.call("GET", "/api/broadcasters")
            show = lambda d: table(*broadcaster_rows(d, now))  # noqa: E731
        elif args.verb in ("drain", "activate"):
            state = "draining" if args.verb == "drain" else "active"
            doc, _ = client.call("PUT", f"/api/broadcasters/{_segment(args.name)}/state", {"state": state})
            show = lambda d: f"broadcaster {d['name']}: {d['state']} ({d['health']['reason']})"  # noqa: E731
        else:  # forget
            client.call("DELETE", f"/api/broadcasters/{_segment(args.name)}?forget=true")
            doc, show = {"name": args.name, "forgotten": True}, lambda d: f"broadcaster {d['name']} forgotten"
    out.write((json.dumps(doc, indent=2) if args.json else show(doc)) + "\n")
    return OK


def build_parser(prog: str, noun: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{prog} {noun}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help=f"the edge's base URL [EDGE_URL, default {DEFAULT_URL}]")
    common.add_argument("--token", default=None, help="an admin token [EDGE_ADMIN_TOKEN]; prefer the variable "
                                                      "(a flag shows in the process list)")
    common.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    verbs = parser.add_subparsers(dest="verb", metavar="command", required=True)
    if noun == "streams":
        commands = [("list", "every stream, live and ended", None),
                    ("show", "one stream", "id"),
                    ("end", "end a stream (its playlists get ENDLIST)", "id"),
                    ("delete", "delete a stream", "id")]
    else:
        commands = [("list", "every broadcaster with its state and health", None),
                    ("drain", "hand out no new streams (what it serves stays merged)", "name"),
                    ("activate", "undo a drain", "name"),
                    ("forget", "remove it from the registry (self-registered ones only)", "name")]
    for verb, what, operand in commands:
        sub = verbs.add_parser(verb, help=what, description=what, parents=[common])
        if operand is not None:
            sub.add_argument(operand, help="the stream id" if operand == "id" else "the broadcaster's name")
    return parser


def main(noun: str, argv: Sequence[str], environ: dict[str, str] | None = None,
         out: TextIO = sys.stdout, err: TextIO = sys.stderr, prog: str = "edge") -> int:
    env = os.environ if environ is None else environ
    parser = build_parser(prog, noun)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    args.noun = noun
    url = (args.url or env.get("EDGE_URL") or DEFAULT_URL).rstrip("/")
    token = args.token or env.get("EDGE_ADMIN_TOKEN") or ""
    if not token:
        err.write(f"{prog} {noun}: no token: set EDGE_ADMIN_TOKEN (or --token)\n")
        return USAGE
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        err.write(f"{prog} {noun}: --url / EDGE_URL: {url!r} is not an http(s) URL\n")
        return USAGE
    try:
        return run(args, Client(url, token, args.timeout), out)
    except Failure as exc:
        err.write(f"{prog} {noun} {args.verb}: {exc}\n")
        return exc.code
