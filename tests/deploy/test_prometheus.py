"""The alert and recording rules, and the dashboard's queries, as promtool (Debian's prometheus
package) sees them: valid PromQL, alerts that fire on the series they are about (rules_test.yml).
That the metrics they name exist is tested against a real edge in test_metrics_exported.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import (
    DASHBOARD, DEPLOY, RULES, RULES_TESTS, dashboard_exprs, exported_names, metric_names, rule_exprs, run, tool,
)


def test_the_rules_are_valid() -> None:
    checked = run(tool("promtool"), "check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_on_its_series_and_not_on_a_healthy_node() -> None:
    tested = run(tool("promtool"), "test", "rules", RULES_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    tested = {case["alertname"] for test in yaml.safe_load(RULES_TESTS.read_text())["tests"]
              for case in test.get("alert_rule_test", ())}
    assert alerts - tested == set()


def test_a_wrong_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    shutil.copy(RULES_TESTS, tmp_path / RULES_TESTS.name)
    text = RULES.read_text()
    assert "edge_streams_stalled > 0" in text
    (tmp_path / RULES.name).write_text(text.replace("edge_streams_stalled > 0", "edge_streams_stalled > 1"))
    tested = run(tool("promtool"), "test", "rules", tmp_path / RULES_TESTS.name)
    assert tested.returncode != 0 and "EdgeStreamStalled" in tested.stdout + tested.stderr


def test_bad_promql_fails_the_check(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("expr: edge_store_up == 0", "expr: edge_store_up == == 0"))
    checked = run(tool("promtool"), "check", "rules", broken)
    assert checked.returncode != 0


def as_recording_rules(exprs: dict[str, str]) -> str:
    """Each query as a recording rule, so `promtool check rules` parses it."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs.values())]
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    generated = tmp_path / "dashboard-rules.yml"
    generated.write_text(as_recording_rules(exprs))
    checked = run(tool("promtool"), "check", "rules", generated)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout


def test_a_broken_dashboard_query_is_caught(tmp_path: Path) -> None:
    doc = json.loads(DASHBOARD.read_text())
    doc["panels"][1]["targets"][0]["expr"] += ")"
    generated = tmp_path / "dashboard-rules.yml"
    generated.write_text(as_recording_rules(dashboard_exprs(doc)))
    assert run(tool("promtool"), "check", "rules", generated).returncode != 0


def test_the_dashboard_is_importable() -> None:
    """What Grafana needs to import it: a uid and title, the Prometheus data source as a variable
    (so the import asks for one), and every panel querying through it."""
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}" and target["expr"].strip()


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (route) (rate(edge_http_requests_total{status=~"5.."}[5m]))', {"edge_http_requests_total"}),
    ("histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket[1m])))", {"a_seconds_bucket"}),
    ("x > 0 and on (instance) y offset 5m unless z", {"x", "y", "z"}),
    ('max(edge_broadcasters{state="healthy"}) == 0 and up{job="edge"} == 0', {"edge_broadcasters", "up"}),
    ("job:requests:rate5m / ignoring (status) group_left sum without (route) (b)", {"job:requests:rate5m", "b"}),
    ("rate(m[$__rate_interval]) * 1e3", {"m"}),
])
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_follow_each_family_type() -> None:
    """A labelled counter offers its _total series before its first count; a histogram its
    buckets, count and sum; nothing else is offered."""
    exposition = "\n".join([
        "# HELP a_events Events.", "# TYPE a_events counter",
        "# HELP b_seconds Time.", "# TYPE b_seconds histogram",
        'b_seconds_bucket{le="+Inf"} 1.0', "b_seconds_count 1.0", "b_seconds_sum 0.5",
        "# HELP c_up Up.", "# TYPE c_up gauge", "c_up 1.0", "",
    ])
    assert exported_names(exposition) == {"a_events_total", "b_seconds_bucket", "b_seconds_count", "b_seconds_sum", "c_up"}


def test_the_example_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    """Checked as Prometheus would load it, with its rules beside it and the token file it names
    put in place (promtool insists that file exists)."""
    config = (DEPLOY / "prometheus" / "prometheus.example.yml").read_text()
    token_file = "/etc/prometheus/secrets/edge-metrics-token"
    assert token_file in config and "job_name: edge" in config
    (tmp_path / "token").write_text("scrape-me")
    (tmp_path / "prometheus.yml").write_text(config.replace(token_file, str(tmp_path / "token")))
    shutil.copy(RULES, tmp_path / "rules.yml")
    checked = run(tool("promtool"), "check", "config", tmp_path / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in checked.stdout
