"""The "Reference data" page in a real browser: headless Chromium (Debian's) against ``airflow standalone``.

One standalone for the module (started like ``make airflow``, see ``tests/integration/test_airflow_api.py``),
on a warehouse with a real sync, backfill and health checks (:mod:`tests.integration.dashboard_world`).  DAGs
stay paused at creation, so nothing changes the data while the page is looked at.  Playwright logs in through
Airflow's login form, opens "Reference data" from the navigation and checks that the page (framed inside the
Airflow UI) shows the tables, the counts, the placeholders, the syncs and the alerts of that data and that
Chart.js drew every chart with it; anonymous requests get 401; the empty trigger form of ``refdata_review``
submits and its run succeeds.  The screenshot is written to the test's tmp folder, and to
``docs/ui-reference-data.png`` with ``REFDATA_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from devtools import demo
from devtools.airflow_standalone import Standalone
from devtools.servers import free_port
from tests.conftest import REPO_ROOT
from tests.integration.dashboard_world import DashboardWorld, build_world
from tests.integration.test_airflow_api import Api

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO_ROOT / "docs" / "ui-reference-data.png"
RUN_TIMEOUT_SECONDS = 300
# Tall enough that the framed page shows all its sections in one screenshot.
VIEWPORT = {"width": 1440, "height": 1800}


@pytest.fixture(scope="module", autouse=True)
def _chromium_installed():
    # Fails rather than skips, like the database tests: `make deps` installs it, so a missing browser is a
    # broken install, not a reason to leave the page untested.
    assert CHROMIUM.exists(), "Debian's chromium is not installed at /usr/bin/chromium (`make deps` installs it)"


@dataclass
class AirflowUI:
    world: DashboardWorld
    standalone: Standalone
    api: Api
    folder: Path


@pytest.fixture(scope="module")
def airflow_ui(pg_server, mysql_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui_plugin")
    name = f"ui_{uuid.uuid4().hex[:10]}"
    with demo.isolated_databases(pg_server, mysql_server, name) as (pg_dsn, mysql_dsn):
        world = build_world(pg_dsn, mysql_dsn, folder)
        metadata = demo.create_database(pg_server, f"airflow_meta_{name}")
        try:
            env = demo.airflow_env(
                folder / "airflow",
                pg_dsn,
                mysql_dsn,
                config_dir=world.config_dir,
                facts_dir=world.facts_file.parent,
                metadata_dsn=metadata,
            )
            standalone = Standalone(env, free_port(), folder / "standalone.log")
            # Nothing starts on its own (no 01:00 sync slot): the page must show exactly the world's data.
            standalone.env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"
            standalone.start()
            try:
                standalone.wait_ready(timeout=300)
                api = Api(standalone.port)
                api.login("admin", standalone.password())
                yield AirflowUI(world, standalone, api, folder)
                api.wait_until_idle(RUN_TIMEOUT_SECONDS)
            finally:
                how = standalone.stop()
            assert how == "SIGINT", f"standalone needed {how} to stop; log {standalone.log_file}"
        finally:
            with psycopg.connect(pg_server, autocommit=True) as conn:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(f"airflow_meta_{name}")))


@pytest.fixture(scope="module")
def page(airflow_ui):
    """A Chromium page logged in through Airflow's own login form."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="Asia/Shanghai")
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(airflow_ui.standalone.url + "/")
        page.wait_for_url("**/auth/login**")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", airflow_ui.standalone.password())
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/auth/login" not in url)
        assert "_token" in {c["name"] for c in context.cookies()}
        yield page
        browser.close()


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_anonymous_requests_are_refused(airflow_ui):
    base = f"http://127.0.0.1:{airflow_ui.standalone.port}/refdata"
    for path in ("/", "/api/summary", f"/api/tables/{quote('business.年金计划')}", "/static/app.js"):
        assert _status(base + path) == 401, path
        assert _status(base + path, {"Cookie": "_token=forged"}) == 403, path
    # With the API's token the same request is answered: it is the login that is missing above.
    assert _status(base + "/api/summary", {"Authorization": f"Bearer {airflow_ui.api.token}"}) == 200


def _cells(frame, table_id: str) -> list[list[str]]:
    return frame.evaluate(
        f"() => [...document.querySelectorAll('#{table_id} tbody tr')]"
        ".map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent.trim()))"
    )


def test_the_page_shows_the_real_sync_and_backfill(airflow_ui, page):
    world = airflow_ui.world
    page.get_by_role("link", name="Reference data").first.click()
    page.wait_for_url("**/plugin/reference-data")
    frame = page.wait_for_selector("iframe").content_frame()
    frame.wait_for_selector("body[data-loaded]")
    assert frame.evaluate("document.body.dataset.loaded") == "true", frame.inner_text("#error")
    assert frame.url.endswith("/refdata/")

    # Counts: what the health check measured right after the backfill (the incremental sync changed nothing).
    health = {h.table: h for h in world.health_after_backfill}
    rows = _cells(frame, "counts")
    assert [r[0] for r in rows] == world.tables
    for row in rows:
        h = health[row[0]]
        assert row[1:5] == [f"{h.total_rows:,}", f"{h.authoritative_rows:,}", f"{h.auto_derived_rows:,}",
                            f"{h.needs_review_rows:,}"], row  # fmt: skip
        assert row[5] == f"{100 * h.auto_derived_ratio:.1f}%" and row[6] == f"{h.open_placeholders:,}"
    assert sum(h.auto_derived_rows for h in health.values()) == world.hybrid.backfill_count

    # The charts were drawn by Chart.js with that data.
    charts = frame.evaluate(
        """() => Object.fromEntries(['chart-counts', 'chart-ratio', 'chart-coverage'].map(id => {
             const chart = Chart.getChart(document.getElementById(id));
             return [id, {labels: chart.data.labels, drawn: chart.canvas.width > 0 && chart.chartArea.width > 0,
                          datasets: chart.data.datasets.map(d => ({label: d.label,
                                                                   data: d.data.filter(v => v !== null)}))}];
           }))"""
    )
    assert all(c["drawn"] for c in charts.values())
    bars = charts["chart-counts"]
    assert bars["labels"] == world.tables
    needs_review = next(d for d in bars["datasets"] if d["label"] == "Needs review")
    assert needs_review["data"] == [health[t].needs_review_rows for t in world.tables]
    ratio = {d["label"]: d["data"] for d in charts["chart-ratio"]["datasets"]}
    plan = "business.年金计划"
    # Two health checks and two ensure_references runs; from the backfill on, the ratio after it.
    assert len(ratio[plan]) == 4 and ratio[plan][0] == 0
    assert ratio[plan][-1] == pytest.approx(100 * health[plan].auto_derived_ratio, abs=1e-4)
    coverage = {d["label"]: d["data"] for d in charts["chart-coverage"]["datasets"]}
    metric = next(m for m in world.hybrid.coverage_metrics if m.table == plan)
    assert coverage[plan] == [pytest.approx(100 * metric.covered_values / metric.total_fk_values), 100]

    # Open placeholders, most used first; last syncs with their counts; the alerts of the health rules.
    placeholders = _cells(frame, "placeholders")
    uses = [int(r[2].replace(",", "")) for r in placeholders]
    assert uses and uses == sorted(uses, reverse=True)
    assert {r[0] for r in placeholders} == {t for t, h in health.items() if h.open_placeholders}
    syncs = {r[0]: r for r in _cells(frame, "syncs")}
    for result in world.second_sync:
        row = syncs[result.table]
        assert row[1] == "success" and row[5] == f"{result.rows_read:,}" and row[8] == f"{result.rows_unchanged:,}"
    alerts = frame.locator("#alerts .alert").all_inner_texts()
    assert len(alerts) == sum(1 for h in health.values() if h.auto_derived_ratio > 0.01) > 0
    assert any(plan in text and "warn" in text for text in alerts)

    shot = airflow_ui.folder / "ui-reference-data.png"
    page.screenshot(path=str(shot))
    if os.environ.get("REFDATA_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def test_the_empty_trigger_form_submits(airflow_ui, page):
    dag_id = "refdata_review"
    page.goto(f"{airflow_ui.standalone.url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        status, body = airflow_ui.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns")
        assert status == 200, body
        runs = body["dag_runs"]
        if runs and runs[0]["state"] in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"no finished {dag_id} run after {RUN_TIMEOUT_SECONDS}s: {runs}"
        time.sleep(2)
    (run,) = runs
    assert run["run_type"] == "manual" and run["state"] == "success", airflow_ui.api.task_states(
        dag_id, run["dag_run_id"]
    )
