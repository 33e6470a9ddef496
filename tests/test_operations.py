"""What operators get beside the API: /metrics as the alert rules and the dashboard need it,
and docs/prometheus-alerts.yml and docs/grafana-dashboard.json, checked against the live
/metrics of a server that has run real tasks (on both engines)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from websockets.asyncio.client import connect

from taskstate.core.db import tasks, utcnow, workers
from tests.support.servers import LiveServer, live_server, make_settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
ALERTS = DOCS / "prometheus-alerts.yml"
DASHBOARD = DOCS / "grafana-dashboard.json"
ALERTS_TEST = Path(__file__).resolve().parent / "prometheus" / "alerts_test.yml"
#: Series Prometheus makes itself, per scrape target: never in an exposition.
PROMETHEUS_OWN = {"up"}
#: Labels Prometheus attaches to every series it scrapes.
TARGET_LABELS = {"job", "instance"}

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$")


def exposition(text: str) -> dict[str, set[str]]:
    """Each sample name of an exposition, with the label names its samples carry."""
    names: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = set(re.findall(r'(\w+)="', match.group(2) or ""))
        names.setdefault(match.group(1), set()).update(labels)
    return names


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
             "bool", "offset", "inf", "nan", "atan2"}  # fmt: skip


def promql_selectors(expr: str) -> list[tuple[str, set[str]]]:
    """Every metric a PromQL expression selects, with the label names its matchers use.

    Strings are blanked first (their contents are label values, not names), then each
    `name{matchers}` is taken with its label names and removed, grouping clauses
    (`by (le, type)`), ranges (`[5m]`) and function calls are dropped, and what is left of
    the identifiers are bare metric names (`taskstate_queue_depth > 0`)."""
    blanked = _STRING.sub('""', expr)
    found: list[tuple[str, set[str]]] = []

    def take(match: re.Match[str]) -> str:
        labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", match.group(2)))
        if match.group(1) and match.group(1) not in _KEYWORDS:
            found.append((match.group(1), labels))
        elif match.group(1) is None:  # {__name__="x"} and friends are not used here
            raise AssertionError(f"a selector without a metric name in {expr!r}")
        return " "

    rest = _MATCHERS.sub(take, blanked)
    rest = _GROUPING.sub(" ", _RANGE.sub(" ", rest))
    rest = re.sub(r"\$\w+", " ", rest)  # Grafana's variables ($__rate_interval, $instance)
    for name in _IDENT.findall(rest):
        if name.lower() not in _KEYWORDS and not re.fullmatch(r"\d\w*", name):
            found.append((name, set()))
    return found


def test_promql_selectors_reads_names_not_functions_labels_or_values() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, instance) (rate(a_seconds_bucket{x=~"b|c", y!="d"}[5m])))'
        ' > 1 and on() max(b_total) == 0 unless c offset 5m'
    )
    assert promql_selectors(expr) == [("a_seconds_bucket", {"x", "y"}), ("b_total", set()), ("c", set())]
    assert promql_selectors('absent(up{job="taskstate"} == 1)') == [("up", {"job"})]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules: list[dict[str, Any]] = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
        rules.extend(group["rules"])
    return rules


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            exprs.append(re.fullmatch(r"label_values\((\w+), *\w+\)", query).group(1))  # type: ignore[union-attr]
    return exprs


def test_alert_rules_are_well_formed() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) >= 8
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"Taskstate[A-Z]\w+", rule["alert"])
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    by_name = {rule["alert"]: rule for rule in rules}
    # What the issue asks for, at least: stuck tasks, queue age, lost workers, instance down.
    assert "taskstate_stuck_tasks" in by_name["TaskstateStuckTasks"]["expr"]
    assert "taskstate_queue_oldest_age_seconds" in by_name["TaskstateQueueWaitHigh"]["expr"]
    assert 'taskstate_workers{state="lost"}' in by_name["TaskstateWorkerLost"]["expr"]
    assert "up{" in by_name["TaskstateInstanceDown"]["expr"]


def test_promtool_accepts_the_alert_rules_and_each_fires_when_it_should() -> None:
    """`promtool check rules`, then `promtool test rules` on tests/prometheus/alerts_test.yml:
    every alert fires on the series it is meant for (its annotations rendered), and only once
    its `for:` has passed (each case also asks for no alert just before)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package has it)")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    tested = subprocess.run([promtool, "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_parses_every_query_of_the_dashboard(tmp_path: Path) -> None:
    """Each panel's PromQL, Grafana's variables given values, as a recording rule that
    `promtool check rules` parses: a typo in a query fails here, not in front of a user."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package has it)")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    variables = {"$__rate_interval": "1m", "$instance": ".*"}
    rules = [
        {"record": f"dashboard:query_{n}", "expr": re.sub(r"\$\w+", lambda m: variables[m.group(0)], e)}
        for n, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout


def test_the_rules_tests_cover_every_alert() -> None:
    cases = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_the_dashboard_is_a_grafana_dashboard_with_the_panels_operators_need() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for wanted in ("throughput by outcome", "queue depth and oldest", "tasks by state", "transition latency",
                   "http latency", "instances", "websocket subscribers"):  # fmt: skip
        assert wanted in titles, wanted


async def run_a_mixed_load(server: LiveServer) -> None:
    """Several tasks at once, one of which fails, while a WebSocket subscriber listens."""
    async with connect(server.ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        created = await asyncio.gather(
            *(server.create("demo.sleep", params={"seconds": 0.3, "steps": 3}) for _ in range(6)),
            server.create("demo.noop"),
            server.create("demo.fail", params={"message": "on purpose"}),
        )
        done = await asyncio.gather(*(server.wait_for(task["id"]) for task in created))
        assert sorted(task["state"] for task in done) == ["completed"] * 7 + ["failed"]
        assert (await server.client.get(f"/api/v2/tasks/{created[0]['id']}")).status_code == 200
        assert (await server.client.get("/api/v2/no-such-route")).status_code == 404
        text = (await server.client.get("/metrics")).text
    assert re.search(r"^taskstate_websocket_subscribers 1\.0$", text, re.M), text


async def test_every_metric_of_the_alerts_and_the_dashboard_is_in_the_live_metrics(
    server: LiveServer,
) -> None:
    await run_a_mixed_load(server)
    live = exposition((await server.client.get("/metrics")).text)
    used = [(source, expr) for source in ("alerts",) for expr in (r["expr"] for r in alert_rules())]
    used += [("dashboard", expr) for expr in dashboard_exprs()]
    checked = set()
    for source, expr in used:
        for name, labels in promql_selectors(expr):
            if name in PROMETHEUS_OWN:
                assert labels <= TARGET_LABELS
                continue
            assert name in live, f"{source}: {name} (in {expr!r}) is not in /metrics"
            unknown = labels - live[name] - TARGET_LABELS
            assert not unknown, f"{source}: {name} has no label {unknown} (in {expr!r})"
            checked.add(name)
    # The dashboard and the rules between them use every family /metrics has.
    families = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in live}
    used_families = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in checked}
    assert families <= used_families, families - used_families


async def test_metrics_have_no_created_series_and_label_http_by_route_template(server: LiveServer) -> None:
    await run_a_mixed_load(server)
    text = (await server.client.get("/metrics")).text
    assert "_created" not in text
    live = exposition(text)
    assert all(not name.endswith("_created") for name in live)
    http = [x for x in text.splitlines() if x.startswith("taskstate_http_request_duration_seconds_count")]
    assert any('route="/api/v2/tasks"' in x and 'method="POST"' in x and 'status="201"' in x for x in http)
    assert any('route="/api/v2/tasks/{task_id}"' in x and 'status="200"' in x for x in http), http
    assert any('route="unmatched"' in x and 'status="404"' in x for x in http), http
    assert not any("no-such-route" in x for x in http)
    assert re.search(r'^taskstate_workers\{state="running"\} 1\.0$', text, re.M)
    assert re.search(r"^taskstate_job_slots 10\.0$", text, re.M)
    assert re.search(r"^taskstate_stuck_tasks 0\.0$", text, re.M)
    assert re.search(r'^taskstate_sweeper_actions_total\{to_state="orphaned"\} 0\.0$', text, re.M)


async def test_stuck_tasks_and_lost_workers_are_counted(database_url: str) -> None:
    """An API-only instance (no sweeper to clear them), a lost peer and a task it held that
    has shown no sign of life for longer than its timeout."""
    async with live_server(make_settings(database_url, run_supervisor=False)) as server:
        long_ago = utcnow() - timedelta(minutes=10)
        task = await server.create("demo.noop")
        async with server.services.store.db.writer.begin() as conn:
            await conn.execute(
                workers.insert().values(
                    id="peer-1",
                    host="elsewhere",
                    pid=1,
                    version="0",
                    started_at=long_ago,
                    heartbeat_at=long_ago,
                    state="running",
                )
            )
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task["id"])
                .values(state="running", worker_id="peer-1", timeout_seconds=1, heartbeat_at=long_ago)
            )
        text = (await server.client.get("/metrics")).text
        assert re.search(r"^taskstate_stuck_tasks 1\.0$", text, re.M), text
        assert re.search(r'^taskstate_workers\{state="lost"\} 1\.0$', text, re.M), text
        assert re.search(r'^taskstate_workers\{state="running"\} 0\.0$', text, re.M), text
        assert re.search(r"^taskstate_job_slots 0\.0$", text, re.M), text
        assert re.search(r'^taskstate_tasks\{state="running"\} 1\.0$', text, re.M), text
        assert (await server.client.get("/readyz")).json()["checks"]["stuck_tasks"] == 1
