"""What the deployment tests share: where deploy/ is, the validators (installed by install.sh or
Debian's prometheus package; a missing one fails the test, it never skips), the metric names a
PromQL expression or a scrape holds, and a series' value in a scrape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TESTS = DEPLOY / "prometheus" / "rules_test.yml"
DASHBOARD = DEPLOY / "grafana" / "edge-dashboard.json"
# Made by Prometheus itself for every target, not by the edge.
PROMETHEUS_MADE = frozenset({"up"})


def tool(name: str) -> str:
    """A validator's path: the venv's bin directory first (PyPI tools), then PATH (Debian's)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    assert found, f"{name} is not installed (./install.sh, or Debian: apt-get install prometheus)"
    return found


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                       "group_left", "group_right", "inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names in a PromQL expression: identifiers that are not a
    function or aggregation (followed by "("), a keyword, a label, a string or a duration."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.$])[A-Za-z_:][\w:]*", text):
        word = match.group()
        if word.lower() in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus sees it once Grafana has put in its interval variables."""
    return re.sub(r"\$\{?__\w+\}?", "5m", expr)


def rule_exprs() -> dict[str, str]:
    """Each rule of rules.yml by its name (the alert or the recorded series)."""
    doc = yaml.safe_load(RULES.read_text())
    return {rule.get("alert") or rule["record"]: rule["expr"] for group in doc["groups"] for rule in group["rules"]}


def recorded_names() -> set[str]:
    doc = yaml.safe_load(RULES.read_text())
    return {rule["record"] for group in doc["groups"] for rule in group["rules"] if "record" in rule}


def dashboard_exprs(dashboard: dict | None = None) -> dict[str, str]:
    """Each query of the dashboard, by "panel title / refId", with Grafana's variables put in."""
    doc = dashboard if dashboard is not None else json.loads(DASHBOARD.read_text())
    return {
        f"{panel['title']} / {target['refId']}": grafana_to_promql(target["expr"])
        for panel in doc["panels"] for target in panel.get("targets", ())
    }


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum"),
             "gauge": ("",), "untyped": ("",), "info": ("_info",), "stateset": ("",), "gaugehistogram": ("_bucket",)}


def exported_names(exposition: str) -> set[str]:
    """Every series name a scrape offers: the samples present, and for each family declared (a
    labelled counter has no sample until first counted) the names its type gives its samples."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition) for sample in family.samples
    }


def value(exposition: str, name: str, **labels: str) -> float:
    """One series' value in a scrape, 0 when absent (a counter not yet counted)."""
    return samples(exposition).get((name, frozenset(labels.items())), 0.0)
