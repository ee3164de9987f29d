"""The steward commands of the CLI (health, export-review, apply-review, approve, reject, remap), run for real.

Some tests start ``python -m airflow_provider_refdata`` in a fresh process (exit codes, stderr, no Airflow
import), the others call ``main([...])`` in-process; all against the harness's PostgreSQL, asserting the
rows, ``refdata.placeholder``, ``refdata.review_log`` and ``refdata.health_snapshot``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.cli import main
from tests.conftest import REPO_ROOT, run_cli
from tests.integration.refdata_business_tables import PLAN, PORTFOLIO, insert
from tests.integration.steward_scenario import HEALTH_WITH_FAIL, StewardScenario, scenario_in_env


@pytest.fixture
def scenario(pg_server, pg_schema, tmp_path, monkeypatch):
    yield from scenario_in_env(pg_server, pg_schema, tmp_path, monkeypatch, REFDATA_PG_DSN=pg_server)


def _env(scenario: StewardScenario) -> dict[str, str]:
    return {"REFDATA_PG_DSN": scenario.dsn, "REFDATA_CONFIG_DIR": str(scenario.config_dir)}


def _edit(path: Path, decisions: dict[str, tuple[str, str | None, dict[str, str]]]) -> None:
    """Fill in an exported CSV review file: {key: (action, remap_to, {column: new value})}."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    key_column = header[2]
    for row in rows[1:]:
        record = dict(zip(header, row, strict=True))
        if record[key_column] in decisions:
            action, target, values = decisions[record[key_column]]
            row[header.index("action")] = action
            row[header.index("remap_to")] = target or ""
            for column, value in values.items():
                row[header.index(column)] = value
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_health_prints_the_table_and_alerts_and_exits_by_level(scenario):
    ok = run_cli("health", env_vars=_env(scenario))
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].split() == "table rows auth derived ratio review open oldest_d <=1d <=7d <=30d older status".split()
    plan_line = next(line for line in lines if line.startswith(scenario.plan))
    assert plan_line.split()[1:8] == ["5", "2", "3", "60.00%", "3", "3", "0.0"] and plan_line.endswith("ok")
    assert f"[WARN] {scenario.plan}: auto-derived ratio 60.00%" in ok.stdout
    assert len(scenario.snapshots()) == 4

    scenario.write_sync_config(HEALTH_WITH_FAIL)
    failed = run_cli("health", "--tables", "annuity_plan", "--json", "--no-store", env_vars=_env(scenario))
    assert failed.returncode == 1, failed.stderr
    payload = json.loads(failed.stdout)
    assert [h["table"] for h in payload["tables"]] == [scenario.plan]
    assert [(a["rule"], a["level"]) for a in payload["alerts"]] == [
        ("auto_derived_ratio", "warn"),
        ("needs_review_count", "fail"),
    ]
    assert len(scenario.snapshots()) == 4  # --no-store


def test_health_usage_errors_end_on_one_line_with_exit_2(scenario):
    no_dsn = run_cli("health", env_vars={"REFDATA_CONFIG_DIR": str(scenario.config_dir)})
    assert no_dsn.returncode == 2 and no_dsn.stderr.strip().splitlines() == [
        "error: no warehouse DSN: pass --warehouse-dsn or set REFDATA_PG_DSN"
    ]
    unknown = run_cli("health", "--tables", "nope", env_vars=_env(scenario))
    assert unknown.returncode == 2 and "unknown table(s) nope" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "Traceback" not in unknown.stderr
    assert scenario.snapshots() == []


def test_export_edit_apply_round_trip_with_dry_run_first(scenario, tmp_path, capsys):
    out = tmp_path / "review" / "年金计划.csv"
    assert main(["export-review", scenario.plan, "--output", str(out), "--since", "7d"]) == 0
    printed = capsys.readouterr().out
    assert f"exported 3 open placeholder(s) of {scenario.plan}" in printed and "客户名称" in printed
    with out.open(encoding="utf-8-sig", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    assert header[:3] == ["action", "remap_to", "年金计划号"] and "客户名称" not in header
    assert [r[2] for r in rows] == ["X9", "P0O1", "Y1"]  # most-used first
    _edit(
        out,
        {
            "X9": ("approve", None, {"计划名称": "审核后的计划"}),
            "P0O1": ("remap", "P001", {}),
            "Y1": ("reject", None, {}),
        },
    )
    before = scenario.plan_rows()

    assert main(["apply-review", str(out), "--actor", "王芳", "--dry-run"]) == 0
    dry = capsys.readouterr()
    assert "1 approved, 1 rejected, 1 remapped, 0 unchanged, 0 invalid; dry run" in dry.out and dry.err == ""
    assert scenario.plan_rows() == before and scenario.review_log() == []

    assert main(["apply-review", str(out), "--actor", "王芳"]) == 0
    assert "1 approved, 1 rejected, 1 remapped, 0 unchanged, 0 invalid; applied" in capsys.readouterr().out
    rows_after = scenario.plan_rows()
    assert set(rows_after) == {"P001", "P002", "X9"}
    assert rows_after["X9"] == ("审核后的计划", "auto_derived", False)
    assert scenario.placeholders() == {
        "X9": (3, "approved", "王芳"),
        "P0O1": (2, "remapped", "王芳"),
        "Y1": (1, "rejected", "王芳"),
    }
    assert sorted(scenario.review_log()) == [
        ("P0O1", "remap", "王芳", "P001"),
        ("X9", "approve", "王芳", None),
        ("Y1", "reject", "王芳", None),
    ]
    assert scenario.query("SELECT from_key, to_key FROM refdata.key_alias WHERE table_name = %s", (scenario.plan,)) == [
        ("P0O1", "P001")
    ]
    # Applying the same file again changes nothing.
    capsys.readouterr()
    assert main(["apply-review", str(out), "--actor", "王芳"]) == 0
    assert "0 approved, 0 rejected, 0 remapped, 3 unchanged, 0 invalid" in capsys.readouterr().out
    assert len(scenario.review_log()) == 3


def test_apply_review_prints_every_invalid_row_with_its_line_and_applies_nothing(scenario, tmp_path):
    out = tmp_path / "review.xlsx"
    done = run_cli("export-review", scenario.plan, "--output", str(out), env_vars=_env(scenario))
    assert done.returncode == 0, done.stderr
    assert "(xlsx)" in done.stdout
    from openpyxl import load_workbook

    sheet = load_workbook(out, read_only=True).worksheets[0]
    header, *rows = [[c for c in row] for row in sheet.iter_rows(values_only=True)]
    assert header[2] == "年金计划号" and "客户名称" not in header and [r[2] for r in rows] == ["X9", "P0O1", "Y1"]
    csv_file = tmp_path / "review.csv"
    assert main(["export-review", scenario.plan, "--output", str(csv_file)]) == 0
    _edit(csv_file, {"X9": ("promote", None, {}), "P0O1": ("remap", "P999", {}), "Y1": ("approve", None, {})})
    failed = run_cli("apply-review", str(csv_file), "--actor", "王芳", env_vars=_env(scenario))
    assert failed.returncode == 1
    invalid = failed.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in invalid] == ["invalid", "invalid"]
    assert invalid[0].startswith("invalid: line 2, key X9") and "promote" in invalid[0]
    assert invalid[1].startswith("invalid: line 3, key P0O1") and "P999" in invalid[1]
    assert "nothing applied" in failed.stdout
    assert scenario.review_log() == [] and all(p[1] is None for p in scenario.placeholders().values())
    partial = run_cli("apply-review", str(csv_file), "--actor", "王芳", "--partial", env_vars=_env(scenario))
    assert partial.returncode == 1 and "1 approved" in partial.stdout and "applied" in partial.stdout
    assert scenario.review_log() == [("Y1", "approve", "王芳", None)]


def test_approve_reject_remap_commands(scenario, capsys):
    assert (
        main(["approve", scenario.plan, "X9", "Y1", "--actor", "李雷", "--set", "计划名称=补全", "--set", "计划类型="])
        == 0
    )
    assert "2 approved" in capsys.readouterr().out
    rows = scenario.plan_rows()
    assert rows["X9"] == ("补全", "auto_derived", False) and rows["Y1"] == ("补全", "auto_derived", False)
    assert main(["approve", scenario.plan, "P0O1", "--actor", "李雷", "--authoritative"]) == 0
    assert scenario.plan_rows()["P0O1"][1:] == ("authoritative", False)
    capsys.readouterr()

    # A placeholder a portfolio still references cannot be rejected: refused, nothing changed.
    with psycopg.connect(scenario.dsn) as conn:
        insert(conn, scenario.schema, PLAN, [{"年金计划号": "Z1", "_source": "auto_derived", "_needs_review": True}])
        insert(conn, scenario.schema, PORTFOLIO, [{"组合代码": "Q1", "年金计划号": "Z1"}])
    assert main(["reject", scenario.plan, "Z1", "--actor", "李雷"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("refused: ") and PORTFOLIO in err[0]
    assert "Z1" in scenario.plan_rows()

    assert main(["remap", scenario.plan, "Z1", "P404", "--actor", "李雷"]) == 1
    assert "P404" in capsys.readouterr().err
    assert main(["remap", scenario.plan, "Z1", "P002", "--actor", "李雷"]) == 0
    assert "1 remapped" in capsys.readouterr().out
    assert "Z1" not in scenario.plan_rows()
    portfolio = scenario.query(
        sql.SQL("SELECT 年金计划号 FROM {}.{} WHERE 组合代码 = 'Q1'").format(
            sql.Identifier(scenario.schema), sql.Identifier(PORTFOLIO)
        )
    )
    assert portfolio == [("P002",)]  # the foreign key holding the placeholder was rewritten
    assert [r[:2] for r in scenario.review_log()] == [
        ("X9", "approve"),
        ("Y1", "approve"),
        ("P0O1", "approve"),
        ("Z1", "remap"),
    ]
    assert main(["approve", scenario.plan, "X9", "--actor", "李雷", "--set", "no_equals_sign"]) == 2


def test_the_cli_path_never_imports_airflow(scenario):
    code = (
        "import sys\n"
        "from airflow_provider_refdata.cli import main\n"
        "status = main(['health', '--no-store'])\n"
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "print(status, loaded)\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REFDATA_")} | _env(scenario)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=environ,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []"
