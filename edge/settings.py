"""The one settings object: every option declared once, read once at start-up.

Each option is a field of `Settings` whose metadata carries its help text. From that one declaration
come the `EDGE_<NAME>` environment variable, the `--name` command-line flag, the key in a TOML config
file and the README's configuration table (`edge config-table` prints it).
Precedence: command line > environment > config file > default.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from broadcaster_registry.destinations import parse_networks
from broadcaster_registry.liveness import LivenessPolicy
from broadcaster_registry.ranking_cache import CachePolicy
from edge.playlists.layout import Layout
from edge.playlists.merge import Policy
from edge.playlists.upstream_parse import ParseLimits
from geo.proxies import TrustedProxies

ENV_PREFIX = "EDGE_"


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the option."""


def _opt(default: Any, help: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "secret": secret})


@dataclass(frozen=True)
class Settings:
    host: str = _opt("127.0.0.1", "Address to listen on (0.0.0.0 for every interface).")
    port: int = _opt(8080, "TCP port to listen on.")
    workers: int = _opt(
        0, "Worker processes serving the port, each restarted if it dies; 0: one per core. They share "
        "the store (SQLite too): one poller per stream among them, the same playlists from each.",
    )
    config: str = _opt("", "Path of a TOML config file whose keys are these option names.")
    data_dir: str = _opt("data", "Directory of the embedded store (SQLite) and generated credentials.")
    store: str = _opt(
        "", "Store URL: empty for SQLite in the data directory, sqlite:///path/file.db, or "
        "redis://[:password@]host:6379/0 (also rediss://, unix://) shared by several edge nodes.",
        secret=True,
    )
    redis_prefix: str = _opt("edge:", "Prefix of every Redis key, so several fleets can share one Redis.")
    api_keys: tuple[str, ...] = _opt(
        (), "Comma-separated API keys for /api/stream. Empty: one is generated into DATA_DIR/api-key.",
        secret=True,
    )
    admin_tokens: tuple[str, ...] = _opt(
        (), "Comma-separated admin tokens (every API). Empty: one is generated into DATA_DIR/admin-token.",
        secret=True,
    )
    broadcaster_tokens: tuple[str, ...] = _opt(
        (),
        "Comma-separated shared tokens any broadcaster may use to register, heartbeat and call the stream "
        "hook, accepted only with --shared-broadcaster-token. Empty and turned on: one is generated into "
        "DATA_DIR/broadcaster-token.",
        secret=True,
    )
    shared_broadcaster_token: bool = _opt(
        False, "Accept the shared broadcaster tokens, with which any broadcaster may act for any other. "
        "Off: each broadcaster uses its own credential (POST /api/broadcasters/{name}/credentials).",
    )
    broadcaster_networks: tuple[str, ...] = _opt(
        (), "Comma-separated CIDRs broadcasters may be in besides public addresses (10.0.0.0/8 for a "
        "private fleet; 127.0.0.0/8,::1/128 on one machine). Loopback, link-local, private and other "
        "non-public addresses are refused otherwise, at registration and before every fetch.",
    )
    broadcaster_hosts: tuple[str, ...] = _opt(
        (), "Comma-separated host patterns (*.fleet.example.net) a broadcaster's address must match; "
        "empty: any host. A cloud metadata name is allowed only when listed literally.",
    )
    max_body_bytes: int = _opt(262_144, "Largest request body accepted, in bytes (larger: 413).")
    header_timeout: float = _opt(10.0, "Seconds a client has to send a request's headers before its connection is closed.")
    max_connections_per_client: int = _opt(
        256, "Open connections one client address may hold (peers in trusted_proxies are exempt); "
        "further ones are closed at once. 0: no cap.",
    )
    page_size: int = _opt(20, "Default page size of GET /api/stream (at most 100 per page).")
    heartbeat_ttl: float = _opt(30.0, "Seconds without a heartbeat after which a broadcaster is no longer handed out.")
    broadcasters_file: str = _opt(
        "", "TOML file listing static broadcasters ([[broadcasters]] name, address, region, latitude, "
        "longitude, capacity) that the edge probes itself.",
    )
    probe_interval: float = _opt(5.0, "Seconds between active probes of static broadcasters.")
    probe_timeout: float = _opt(2.0, "Seconds a probe may take before it counts as failed.")
    probe_path: str = _opt("/", "Path probed on static broadcasters; any answer below 500 counts as up.")
    ejection_failures: int = _opt(5, "Failed playlist fetches in a row that eject a broadcaster for a while.")
    ejection_base: float = _opt(30.0, "First ejection in seconds; it grows with each ejection (at most 300 s).")
    ejection_max_percent: float = _opt(50.0, "Largest share of the fleet that may be ejected at once.")
    default_region: str = _opt("", "Region whose broadcasters a client that cannot be located is sent to first.")
    ranking_cache_cell: float = _opt(
        0.1, "GET /api/broadcaster answers a located client from its cell's ranking: cell size in degrees (0: "
        "rank every request exactly).")
    ranking_cache_max_age: float = _opt(5.0, "Seconds load drift within a step may go unseen in a cell's ranking "
                                             "(a ranking this old is checked against it).")
    ranking_cache_shadow: float = _opt(0.001, "Share of cached answers also ranked exactly (at most one a second), "
                                             "mismatches counted in edge_broadcaster_ranking_cache_mismatches_total.")
    trusted_proxies: tuple[str, ...] = _opt(
        (), "Comma-separated CIDRs of proxies/CDN edges whose forwarding and geo headers are believed.",
    )
    geoip_database: str = _opt(
        "", "MaxMind-format City database (GeoIP2/GeoLite2/DB-IP). Empty: the shipped DB-IP City Lite.",
    )
    geo_latitude_header: str = _opt("", "Header carrying the client's latitude, set by your CDN (e.g. Fastly).")
    geo_longitude_header: str = _opt("", "Header carrying the client's longitude, set by your CDN.")
    geo_latlon_header: str = _opt(
        "", "Header carrying 'latitude,longitude' (e.g. Google Cloud's {client_city_lat_long}).",
    )
    upstream_playlist_path: str = _opt(
        "/stream/{stream}/{rendition}.m3u8",
        "Where broadcasters serve a rendition's media playlist (path template; go-livepeer's layout).",
    )
    upstream_segment_path: str = _opt(
        "/stream/{stream}/{rendition}/{n}.ts",
        "Where broadcasters keep a rendition's segments, {n} the ingest number; segment URIs anywhere "
        "else on a broadcaster are refused.",
    )
    upstream_timeout: float = _opt(2.0, "Seconds a broadcaster's playlist fetch may take.")
    upstream_max_bytes: int = _opt(1_048_576, "Largest upstream playlist read, in bytes.")
    poll_interval: float = _opt(1.0, "Seconds between refreshes of a watched stream's playlists.")
    discovery_interval: float = _opt(
        10.0, "Seconds between discovery asks of a watched stream that is on time (one broadcaster not known to carry it, in turn).",
    )
    playlist_window: float = _opt(
        12.0, "Seconds of media a live playlist keeps (at least 3 target durations); no longer than the "
        "broadcasters keep their segments (go-livepeer: 6 segments).",
    )
    max_dvr_window: float = _opt(7200.0, "Longest window a stream may ask for (dvrWindowSeconds), in seconds.")
    hole_wait: float = _opt(
        1.0, "Seconds a segment no rendition has is waited for, once a later one is listed, before it is passed "
        "with a discontinuity; at most about half a target duration, or players run dry.",
    )
    rendition_wait: float = _opt(
        3.0, "Seconds a segment some renditions have and others lack (a transcode late or failed) is waited for "
        "before the nearest rendition's copy stands in for it there.",
    )
    target_duration: int = _opt(0, "EXT-X-TARGETDURATION of every stream; 0: from its first segments.")
    lease_ttl: float = _opt(
        3.0, "Seconds a node's claim to poll a stream lasts unless renewed; another node takes over after it.",
    )
    fleet_interval: float = _opt(
        2.0, "Seconds between a node's announcements to the nodes sharing its store; streams are spread "
        "over the live ones (a joining node takes its share within a few of these; a silent one is "
        "counted out after 3 and its streams move).",
    )
    idle_timeout: float = _opt(120.0, "Seconds without players or carriers after which a stream is no longer polled.")
    segment_mode: str = _opt(
        "direct", "Which URIs playlists give segments: direct (on the broadcasters), redirect (the edge's "
        "/stream/<id>/<rendition>/<n>.ts, redirecting to a live copy) or mirror (copied into the segment "
        "store first). A stream may choose its own (segmentMode).",
    )
    segment_store: str = _opt(
        "", "Where segment copies are kept: empty for DATA_DIR/segments, or "
        "s3://bucket[/prefix]?endpoint=https://host&region=us-east-1 (credentials from the AWS_* variables).",
        secret=True,
    )
    segment_public_base: str = _opt(
        "", "URL prefix under which players fetch stored segments directly (a CDN or the bucket); empty: "
        "through the edge's segment route.",
    )
    segment_store_max_bytes: int = _opt(
        20 * 1024**3, "Largest size of the directory segment store, in bytes; the oldest segments go first.",
    )
    segment_retention: float = _opt(
        7 * 86400.0, "Seconds stored segments (and so recordings) are kept in the directory store; with S3 "
        "set a lifecycle rule on the bucket instead.",
    )
    mirror_wait: float = _opt(
        2.0, "Seconds a segment may wait for its copy in mirror mode before it is published direct (counted).",
    )
    copy_concurrency: int = _opt(8, "Segment copies a node runs at once.")
    max_recording: float = _opt(14400.0, "Seconds of a recorded stream (record: true) its playlists keep.")
    recording_retention: float = _opt(
        3 * 86400.0, "Seconds an ended recording is served (then its playlists are 404 and its segments deleted).",
    )
    log_level: str = _opt("info", "Log level: debug, info, warning or error.")
    access_log: bool = _opt(True, "Write one JSON line per request to standard error.")
    metrics_networks: tuple[str, ...] = _opt(
        ("127.0.0.0/8", "::1/128"), "Comma-separated CIDRs of peers that may read /metrics without a token "
        "(not through a proxy: a request with forwarding headers needs a token).",
    )
    metrics_tokens: tuple[str, ...] = _opt(
        (), "Comma-separated bearer tokens that may read /metrics from anywhere (admin tokens may too).",
        secret=True,
    )

    @classmethod
    def options(cls) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(cls)

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> "Settings":
        """Resolve every option from command line overrides, environment and config file."""
        environ = os.environ if environ is None else environ
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        from_env = {
            f.name: environ[env_name(f.name)]
            for f in cls.options()
            if env_name(f.name) in environ
        }
        config_path = overrides.get("config") or from_env.get("config") or ""
        from_file = _read_config_file(config_path) if config_path else {}
        values: dict[str, Any] = {}
        for f in cls.options():
            for source in (overrides, from_env, from_file):
                if f.name in source:
                    values[f.name] = _coerce(f, source[f.name])
                    break
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port: {self.port} is not a TCP port")
        if self.workers < 0:
            raise SettingsError("workers: must be 0 (one per core) or more")
        if self.max_body_bytes < 1024:
            raise SettingsError("max_body_bytes: must be at least 1024")
        if not 1 <= self.page_size <= 100:
            raise SettingsError("page_size: must be between 1 and 100")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise SettingsError(f"log_level: {self.log_level!r} is not debug, info, warning or error")
        for name in ("header_timeout", "probe_interval", "probe_timeout", "upstream_timeout", "poll_interval",
                     "discovery_interval", "hole_wait", "rendition_wait", "idle_timeout", "lease_ttl", "fleet_interval",
                     "mirror_wait", "segment_retention", "max_recording", "recording_retention"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name}: must be a positive number of seconds")
        # What feeds a policy is checked by building the policy: its bounds are the ones that hold.
        self.liveness_policy()
        self.ranking_cache_policy()
        self.parse_limits()
        merge = self.merge_policy()
        if not 0 <= self.target_duration <= merge.max_target_duration:
            raise SettingsError(
                f"target_duration: must be 0 (automatic) or 1-{merge.max_target_duration} seconds "
                "(the merge policy's max_target_duration)"
            )
        if not self.probe_path.startswith("/"):
            raise SettingsError(f"probe_path: {self.probe_path!r} must start with '/'")
        if self.max_connections_per_client < 0:
            raise SettingsError("max_connections_per_client: must be 0 (no cap) or more")
        try:
            TrustedProxies(self.trusted_proxies)
        except ValueError as exc:
            raise SettingsError(f"trusted_proxies: {exc}") from None
        for name in ("broadcaster_networks", "metrics_networks"):
            try:
                parse_networks(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        if self.store and not self.store.startswith(("sqlite:///", "redis://", "rediss://", "unix://")):
            raise SettingsError("store: not a supported URL (sqlite:///path, redis://host:port/db)")
        try:
            Layout(playlist=self.upstream_playlist_path, segment=self.upstream_segment_path)
        except ValueError as exc:
            raise SettingsError(f"upstream_{exc}") from None
        if self.segment_mode not in ("direct", "redirect", "mirror"):
            raise SettingsError(f"segment_mode: {self.segment_mode!r} is not direct, redirect or mirror")
        if self.segment_store and not self.segment_store.startswith("s3://"):
            raise SettingsError("segment_store: not a supported URL (empty, or s3://bucket/prefix?endpoint=...)")
        if not self.segment_store and self.segment_retention < self.recording_retention + self.max_recording:
            raise SettingsError("segment_retention: must cover recording_retention + max_recording, or the "
                                "store deletes a recording's first segments while it is still served")
        if self.copy_concurrency < 1:
            raise SettingsError("copy_concurrency: must be at least 1")
        if self.lease_ttl <= 2 * self.poll_interval:
            raise SettingsError("lease_ttl: must be more than twice poll_interval, or leases lapse between renewals")

    def liveness_policy(self) -> LivenessPolicy:
        return _policy(LivenessPolicy, {
            "heartbeat_ttl": "heartbeat_ttl_s", "ejection_failures": "ejection_consecutive_failures",
            "ejection_base": "base_ejection_s", "ejection_max_percent": "max_ejection_percent",
        }, self)

    def ranking_cache_policy(self) -> CachePolicy | None:
        if self.ranking_cache_cell == 0:
            return None
        return _policy(CachePolicy, {
            "ranking_cache_cell": "cell_degrees", "ranking_cache_max_age": "max_age_s",
            "ranking_cache_shadow": "shadow_fraction",
        }, self)

    def merge_policy(self) -> Policy:
        return _policy(Policy, {"playlist_window": "window_seconds", "hole_wait": "hole_wait_seconds",
                                "rendition_wait": "rendition_wait_seconds"}, self)

    def parse_limits(self) -> ParseLimits:
        return _policy(ParseLimits, {"upstream_max_bytes": "max_bytes"}, self)

    @property
    def layout(self) -> Layout:
        return Layout(playlist=self.upstream_playlist_path, segment=self.upstream_segment_path)

    @property
    def shared_store(self) -> bool:
        return self.store.startswith(("redis://", "rediss://", "unix://"))

    @property
    def worker_count(self) -> int:
        """`workers`, or the cores this process may run on (its CPU affinity: a container's cpuset)."""
        if self.workers:
            return self.workers
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def sqlite_path(self) -> Path:
        if self.store.startswith("sqlite:///"):
            return Path(self.store.removeprefix("sqlite:///"))
        return self.data_path / "edge.db"

    def with_credentials(self) -> "Settings":
        """Fill empty credential lists from files in the data directory, generating them once.

        Generated secrets are written with mode 0600 and never printed: the operator reads the file.
        The shared broadcaster token is generated only when it is turned on.
        """
        generated = {}
        wanted = [name for name in CREDENTIAL_FILES
                  if name != "broadcaster_tokens" or self.shared_broadcaster_token]
        missing = [env_name(name) for name in wanted if not getattr(self, name)]
        if self.shared_store and missing:
            raise SettingsError(
                f"{', '.join(missing)}: must be set when several nodes share the store, "
                "so that every node accepts the same keys"
            )
        for name in wanted:
            filename = CREDENTIAL_FILES[name]
            if not getattr(self, name):
                generated[name] = (_read_or_create_secret(self.data_path / filename),)
        return dataclasses.replace(self, **generated)

    def __repr__(self) -> str:  # secrets must never reach a log through a repr
        shown = ", ".join(
            f"{f.name}={'<%d hidden>' % len(getattr(self, f.name)) if f.metadata['secret'] else repr(getattr(self, f.name))}"
            for f in self.options()
        )
        return f"Settings({shown})"


P = TypeVar("P")


def _policy(kind: Callable[..., P], fields: Mapping[str, str], settings: Settings) -> P:
    """`kind` built from the options named in `fields` (option -> policy field); a value the policy
    refuses is a SettingsError naming the option (policies start their messages with the field)."""
    try:
        return kind(**{field: getattr(settings, option) for option, field in fields.items()})
    except ValueError as exc:
        message = str(exc)
        for option, field in fields.items():
            if message.startswith(field):
                problem = message.removeprefix(field).lstrip(": ")
                raise SettingsError(f"{option}: {problem} ({getattr(kind, '__name__', kind)}.{field})") from None
        raise SettingsError(message) from None


CREDENTIAL_FILES = {
    "api_keys": "api-key",
    "admin_tokens": "admin-token",
    "broadcaster_tokens": "broadcaster-token",
}


def env_name(option: str) -> str:
    return ENV_PREFIX + option.upper()


def flag_name(option: str) -> str:
    return "--" + option.replace("_", "-")


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config: {path} is not valid TOML: {exc}") from None
    known = {f.name for f in Settings.options()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"config: unknown option(s) in {path}: {', '.join(unknown)}")
    return data


def _coerce(f: dataclasses.Field[Any], raw: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError
        if kind.startswith("tuple"):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(item).strip() for item in items if str(item).strip())
        return str(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{f.name}: {raw!r} is not a valid {kind}") from None


def _read_or_create_secret(path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return value


def config_table() -> str:
    """The README's configuration table, generated from the declarations above."""
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for f in Settings.options():
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        rows.append(f"| `{flag_name(f.name)}` | `{env_name(f.name)}` | `{shown}` | {f.metadata['help']} |")
    return "\n".join(rows)
