"""Settings: one object from command line, environment and config file, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.settings import Settings, SettingsError


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('port = 1000\nhost = "0.0.0.0"\nlog_level = "debug"\n')
    env = {"EDGE_CONFIG": str(config), "EDGE_PORT": "2000", "EDGE_HOST": "::1"}
    settings = Settings.load({"port": "3000"}, environ=env)
    assert (settings.port, settings.host, settings.log_level) == (3000, "::1", "debug")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"EDGE_PORT": "eighty"}, "port: 'eighty' is not a valid int"),
        ({"EDGE_ACCESS_LOG": "maybe"}, "access_log: 'maybe' is not a valid bool"),
        ({"EDGE_PAGE_SIZE": "500"}, "page_size: must be between 1 and 100"),
        ({"EDGE_STORE": "mysql://x"}, "store: not a supported URL"),
        ({"EDGE_CONFIG": "/nonexistent/edge.toml"}, "config: cannot read /nonexistent/edge.toml"),
        ({"EDGE_BROADCASTER_NETWORKS": "10.0.0.1/8"}, "broadcaster_networks: '10.0.0.1/8' is not a network"),
        ({"EDGE_METRICS_NETWORKS": "loopback"}, "metrics_networks: 'loopback' is not a network"),
        ({"EDGE_HEADER_TIMEOUT": "0"}, "header_timeout: must be a positive number of seconds"),
        ({"EDGE_MAX_CONNECTIONS_PER_CLIENT": "-1"}, "max_connections_per_client: must be 0"),
        # Bounds of the policies the options feed, named with the option and the policy's field.
        ({"EDGE_TARGET_DURATION": "30"}, "target_duration: must be 0 (automatic) or 1-20 seconds "
                                         "(the merge policy's max_target_duration)"),
        ({"EDGE_HEARTBEAT_TTL": "0"}, "heartbeat_ttl: must be a positive number of seconds (LivenessPolicy.heartbeat_ttl_s)"),
        ({"EDGE_EJECTION_MAX_PERCENT": "101"}, "ejection_max_percent: must be between 0 and 100"),
        ({"EDGE_EJECTION_FAILURES": "0"}, "ejection_failures: must be at least 1 (LivenessPolicy."),
        ({"EDGE_PLAYLIST_WINDOW": "0"}, "playlist_window: must be > 0 (Policy.window_seconds)"),
        ({"EDGE_UPSTREAM_MAX_BYTES": "0"}, "upstream_max_bytes: must be at least 1 (ParseLimits.max_bytes)"),
    ],
)
def test_bad_values_name_the_option(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.load(environ=env)


def test_unknown_config_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("prot = 80\n")
    with pytest.raises(SettingsError, match="unknown option"):
        Settings.load(environ={"EDGE_CONFIG": str(config)})


def test_lists_from_environment_and_secrets_hidden_in_repr() -> None:
    settings = Settings.load(environ={"EDGE_API_KEYS": "k1, k2,,"})
    assert settings.api_keys == ("k1", "k2")
    assert "k1" not in repr(settings) and "<2 hidden>" in repr(settings)


def test_generated_credentials_are_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), shared_broadcaster_token=True).with_credentials()
    again = Settings(data_dir=str(tmp_path), shared_broadcaster_token=True).with_credentials()
    assert settings.api_keys == again.api_keys and len(settings.api_keys[0]) >= 24
    assert len({settings.api_keys[0], settings.admin_tokens[0], settings.broadcaster_tokens[0]}) == 3


def test_no_shared_broadcaster_token_is_generated_unless_turned_on(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path)).with_credentials()
    assert settings.broadcaster_tokens == () and not (tmp_path / "broadcaster-token").exists()
    assert settings.api_keys and settings.admin_tokens


def test_a_shared_store_needs_configured_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), store="redis://127.0.0.1:6379/0", api_keys=("k",))
    with pytest.raises(SettingsError, match="EDGE_ADMIN_TOKENS: must be set"):
        settings.with_credentials()
    shared = Settings(data_dir=str(tmp_path), store="redis://127.0.0.1:6379/0", api_keys=("k",),
                      shared_broadcaster_token=True)
    with pytest.raises(SettingsError, match="EDGE_ADMIN_TOKENS, EDGE_BROADCASTER_TOKENS: must be set"):
        shared.with_credentials()
    assert not (tmp_path / "api-key").exists()


def test_the_readme_documents_every_option_as_declared() -> None:
    from edge.settings import config_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert config_table() in readme, "README's configuration table is stale: paste `edge config-table`"
