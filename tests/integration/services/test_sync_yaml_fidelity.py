"""Reference data files read as a person wrote them, synced into the real PostgreSQL (issue 10, items 8 and 9).

Every case runs through both load paths — COPY straight into an empty target, and stage + merge into a
non-empty one (a seed row is there first) — in ``upsert`` and ``delete_insert`` mode, and a second run of the
same file must rewrite nothing (same ``xmin`` on every row, no count but ``rows_unchanged``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from airflow_provider_refdata.config import ReferenceSyncConfig
from airflow_provider_refdata.services.source_yaml import YamlFileSource
from airflow_provider_refdata.services.sync import ReferenceSyncService

SEED = "~seed"  # the key of the row that makes a target non-empty (sorts after every other test key)
PATHS = ["empty", "non-empty"]
MODES = ["upsert", "delete_insert"]


def _document(schema: str, name: str, path: Path, *, mode: str = "upsert", columns: list[str] | None = None) -> dict:
    source: dict = {"file_path": str(path), "schema_version": "1.0"}
    if columns is not None:
        source["columns"] = columns
    table = {
        "name": name,
        "target_schema": schema,
        "target_table": name,
        "primary_key": "code",
        "source_type": "config_file",
        "sync_mode": mode,
        "source_config": source,
    }
    return {"tables": [table]}


def _table(schema: str, name: str, path: Path, **kwargs):
    return ReferenceSyncConfig.model_validate(_document(schema, name, path, **kwargs)).tables[0]


def _pg(dsn: str, statement: sql.Composable | str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _create(dsn: str, schema: str, table: str, ddl: str, *, seeded: bool) -> None:
    _pg(dsn, sql.SQL("CREATE TABLE {}.{} (" + ddl + ")").format(sql.Identifier(schema), sql.Identifier(table)))
    if seeded:
        _pg(
            dsn,
            sql.SQL("INSERT INTO {}.{} (code) VALUES (%s)").format(sql.Identifier(schema), sql.Identifier(table)),
            (SEED,),
        )


def _rows(dsn: str, schema: str, table: str, columns: str, *, xmin: bool = False) -> list[tuple]:
    extra = ", xmin::text" if xmin else ""
    return _pg(
        dsn,
        sql.SQL("SELECT " + columns + extra + ' FROM {}.{} WHERE code <> %s ORDER BY code COLLATE "C"').format(
            sql.Identifier(schema), sql.Identifier(table)
        ),
        (SEED,),
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _sync(cfg, dsn: str, **kwargs):
    return ReferenceSyncService().sync_table(cfg, YamlFileSource(), dsn, **kwargs)


def _sync_and_resync(dsn: str, cfg, schema: str, table: str, columns: str, *, seeded: bool) -> list[tuple]:
    """Sync (must succeed), then sync the same file again: nothing may be rewritten.  Returns the rows."""
    first = _sync(cfg, dsn)
    assert (first.error, first.skipped_reason) == (None, None)
    assert first.rows_inserted == first.rows_read
    assert first.rows_deleted == (1 if seeded and cfg.sync_mode == "delete_insert" else 0)
    seed_left = _pg(
        dsn,
        sql.SQL("SELECT count(*) FROM {}.{} WHERE code = %s").format(sql.Identifier(schema), sql.Identifier(table)),
        (SEED,),
    )
    assert seed_left == [(1 if seeded and cfg.sync_mode == "upsert" else 0,)]
    stored = _rows(dsn, schema, table, columns, xmin=True)
    again = _sync(cfg, dsn)
    assert (again.error, again.skipped_reason) == (None, None)
    assert (again.rows_inserted, again.rows_updated, again.rows_deleted) == (0, 0, 0)
    assert again.rows_unchanged == again.rows_read == first.rows_read
    assert _rows(dsn, schema, table, columns, xmin=True) == stored  # same xmin: no row rewritten
    return [row[:-1] for row in stored]


# ----------------------------------------------------------------------------------------------------------
# Scalars: the text as written, read by PostgreSQL into the column's type
# ----------------------------------------------------------------------------------------------------------

TEXT_FILE = """
schema_version: "1.0"
description: codes exactly as written
data:
  - code: 0123          # YAML 1.1: the octal number 83
    v: 0123
  - code: 12:30         # YAML 1.1: the sexagesimal number 750
    v: 190:20:30
  - code: NO            # YAML 1.1: false
    v: Off
  - code: 1_000         # YAML 1.1: 1000
    v: 1_000
  - code: 1.50          # YAML 1.1: the float 1.5
    v: 1.10
  - code: 0x1F
    v: 2024-01-15       # YAML 1.1: a date
  - code: "+1"
    v: 1e3
  - code: E1
    v: ''
  - code: E2
    v: ~
  - code: E3
    v:
  - code: E4
    v: .nan
  - code: E5
    v: 'null'
  - code: E6
    v: !!str 0777
  - code: E7
    v: "  padded\\t "
  - code: E8
    v: |
      two
      lines
  - code: E9
    v: .inf
  - code: yes
    v: "~"
"""

TEXT_EXPECTED = [
    ("+1", "1e3"),
    ("0123", "0123"),
    ("0x1F", "2024-01-15"),
    ("1.50", "1.10"),
    ("12:30", "190:20:30"),
    ("1_000", "1_000"),
    ("E1", ""),
    ("E2", None),
    ("E3", None),
    ("E4", None),
    ("E5", "null"),
    ("E6", "0777"),
    ("E7", "padded"),
    ("E8", "two\nlines"),
    ("E9", ".inf"),
    ("NO", "Off"),
    ("yes", "~"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", PATHS)
def test_text_columns_store_the_text_as_written(pg_dsn, pg_schema, tmp_path, target, mode):
    path = _write(tmp_path / "codes.yml", TEXT_FILE)
    _create(pg_dsn, pg_schema, "codes", "code varchar(16) PRIMARY KEY, v text", seeded=target == "non-empty")
    cfg = _table(pg_schema, "codes", path, mode=mode)
    assert _sync_and_resync(pg_dsn, cfg, pg_schema, "codes", "code, v", seeded=target == "non-empty") == TEXT_EXPECTED


TYPED_FILE = """
schema_version: "1.0"
defaults: &defaults { amount: 1.50, exact: 1.50, flag: yes }
data:
  - <<: *defaults
    code: A
    n: 0123
    d: 2024-01-15
    t: 12:30
    ts: 2024-01-15 10:00:00+08
    f: 0.1
  - code: B
    n: -7
    amount: 12
    exact: 0.000100
    flag: NO
    d: 2024-02-29
    t: 23:59:59.5
    ts: 2024-01-15T02:00:00Z
    f: 1e3
  - { code: C1, flag: on }
  - { code: C2, flag: Off }
  - { code: C3, flag: TRUE }
  - { code: C4, flag: false }
  - { code: C5, flag: 1 }
  - { code: C6, flag: 0 }
  - { code: C7, flag: y }
  - { code: C8, flag: n }
  - { code: C9, flag: ~ }
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", PATHS)
def test_typed_columns_read_the_text_by_their_type(pg_dsn, pg_schema, tmp_path, target, mode):
    path = _write(tmp_path / "typed.yml", TYPED_FILE)
    _create(
        pg_dsn,
        pg_schema,
        "typed",
        "code text PRIMARY KEY, n integer, amount numeric(10,2), exact numeric, flag boolean, d date, t time, "
        "ts timestamptz, f double precision",
        seeded=target == "non-empty",
    )
    cfg = _table(pg_schema, "typed", path, mode=mode)
    rows = _sync_and_resync(
        pg_dsn, cfg, pg_schema, "typed", "code, n, amount, exact, flag, d, t, ts, f", seeded=target == "non-empty"
    )
    instant = datetime(2024, 1, 15, 2, 0, tzinfo=UTC)
    assert rows[:2] == [
        # 0123 is decimal 123 (YAML 1.1: 83); 1.50 keeps its scale in an unconstrained numeric (was 1.5)
        ("A", 123, Decimal("1.50"), Decimal("1.50"), True, date(2024, 1, 15), dtime(12, 30), instant, 0.1),
        (
            "B",
            -7,
            Decimal("12.00"),
            Decimal("0.000100"),
            False,
            date(2024, 2, 29),
            dtime(23, 59, 59, 500000),
            instant,
            1000.0,
        ),
    ]
    assert [(r[0], r[4]) for r in rows[2:]] == [
        ("C1", True),
        ("C2", False),
        ("C3", True),
        ("C4", False),
        ("C5", True),
        ("C6", False),
        ("C7", True),
        ("C8", False),
        ("C9", None),
    ]


def test_a_value_that_is_not_valid_for_the_column_fails_the_table(pg_dsn, pg_schema, tmp_path):
    # Before: 12:30 silently became 750 in an integer column.  Now PostgreSQL refuses the text.
    path = _write(tmp_path / "bad.yml", 'schema_version: "1.0"\ndata:\n  - {code: A, n: 12:30}\n')
    _create(pg_dsn, pg_schema, "bad", "code text PRIMARY KEY, n integer", seeded=False)
    result = _sync(_table(pg_schema, "bad", path), pg_dsn)
    assert result.error is not None and "12:30" in result.error
    assert _rows(pg_dsn, pg_schema, "bad", "code") == []


# ----------------------------------------------------------------------------------------------------------
# Refused files: the table is skipped, naming file and line, and nothing stored changes
# ----------------------------------------------------------------------------------------------------------

GOOD = 'schema_version: "1.0"\ndata:\n  - {code: A, name: first}\n  - {code: B, name: second}\n'


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            'schema_version: "1.0"\ndata:\n  - code: A\n    name: one\n    name: two\n',
            ["line 5", "data[0].name", "duplicate key 'name'", "first at line 4"],
        ),
        ('schema_version: "1.0"\ndata: []\ndata:\n  - {code: A}\n', ["line 3", "duplicate key 'data'"]),
        (
            'schema_version: "1.0"\ndata:\n  - {code: A, name: x}\n  - {code: B, name: [a, b]}\n',
            ["line 4", "data[1].name", "is a list", "['a', 'b']"],
        ),
        (
            'schema_version: "1.0"\ndata:\n  - {code: A, name: {first: x}}\n',
            ["line 3", "data[0].name", "is a mapping", "{'first': 'x'}"],
        ),
        ('schema_version: "1.0"\ndata:\n  - {code: A, name: "a\\0b"}\n', ["line 3", "data[0].name", "NUL"]),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_a_refused_file_skips_the_table_and_changes_nothing(pg_dsn, pg_schema, tmp_path, content, expected, mode):
    path = _write(tmp_path / "names.yml", GOOD)
    _create(pg_dsn, pg_schema, "names", "code text PRIMARY KEY, name text", seeded=False)
    cfg = _table(pg_schema, "names", path, mode=mode)
    assert _sync(cfg, pg_dsn).error is None
    before = _rows(pg_dsn, pg_schema, "names", "code, name", xmin=True)
    path.write_text(content, encoding="utf-8")
    result = _sync(cfg, pg_dsn)
    assert result.error is None and result.skipped_reason is not None
    for part in [str(path), *expected]:
        assert part in result.skipped_reason
    assert _rows(pg_dsn, pg_schema, "names", "code, name", xmin=True) == before


@pytest.mark.parametrize("target", PATHS)
def test_a_problem_late_in_a_streamed_file_rolls_everything_back(pg_dsn, pg_schema, tmp_path, target):
    # With configured columns the file is read once, so earlier batches are already COPYed when the bad row
    # comes: the skip must roll them back, into an empty target as into a filled one.
    rows = "".join(f"  - {{code: K{i:03d}, name: n{i}}}\n" for i in range(50))
    path = _write(tmp_path / "late.yml", 'schema_version: "1.0"\ndata:\n' + rows + "  - {code: Z, name: a, name: b}\n")
    _create(pg_dsn, pg_schema, "late", "code text PRIMARY KEY, name text", seeded=target == "non-empty")
    before = _pg(pg_dsn, sql.SQL("SELECT code, xmin::text FROM {}.late").format(sql.Identifier(pg_schema)))
    cfg = _table(pg_schema, "late", path, columns=["code", "name"])
    result = _sync(cfg, pg_dsn, batch_size=7)
    assert (
        result.error is None and "line 53" in result.skipped_reason and "duplicate key 'name'" in result.skipped_reason
    )
    assert _pg(pg_dsn, sql.SQL("SELECT code, xmin::text FROM {}.late").format(sql.Identifier(pg_schema))) == before


def test_an_alias_bomb_in_a_data_file_is_refused_at_once(pg_dsn, pg_schema, tmp_path):
    levels = ["lol0: &lol0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = _write(
        tmp_path / "bomb.yml",
        'schema_version: "1.0"\n' + "\n".join(levels) + "\ndata:\n  - {code: A, name: *lol9}\n",
    )
    _create(pg_dsn, pg_schema, "bomb", "code text PRIMARY KEY, name jsonb", seeded=False)
    t0 = time.perf_counter()
    result = _sync(_table(pg_schema, "bomb", path), pg_dsn)
    assert time.perf_counter() - t0 < 10
    assert result.error is None
    # lol3 expands to 7381 nodes: its second alias in lol4 (line 6) crosses the bound
    assert "line 6" in result.skipped_reason and "alias *lol3" in result.skipped_reason
    assert "more than 10000 nodes" in result.skipped_reason
    assert _rows(pg_dsn, pg_schema, "bomb", "code") == []


# ----------------------------------------------------------------------------------------------------------
# Lists and mappings: JSON into json/jsonb, array literals into arrays (when the service passes the types)
# ----------------------------------------------------------------------------------------------------------

NESTED_FILE = """
schema_version: "1.0"
data:
  - code: A
    attrs: {price: 1.50, code: 0123, label: "1", on: true, yes: yes, none: ~, list: [1, two]}
    counts: [1, 2, 3]
    tags: [0123, "a,b", "q\\"uote", back\\slash, ~, NO, " pad "]
    meta: {b: 1.50, a: [x, 2]}
  - code: B
    attrs: [a, {b: 2}]
    counts: [[1, 2], [3, ~]]
    tags: []
    meta: [1, "1", yes]
  - code: C
    attrs: '{"given": "as JSON text"}'
    counts: '{4,5}'
    tags: '{x,y}'
    meta: '"a JSON string"'
  - code: D
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", PATHS)
def test_lists_and_mappings_go_into_json_and_array_columns(pg_dsn, pg_schema, tmp_path, target, mode):
    # The service tells the reader the target's types (SourceRead.target_types) before it reads the rows.
    path = _write(tmp_path / "nested.yml", NESTED_FILE)
    _create(
        pg_dsn,
        pg_schema,
        "nested",
        "code text PRIMARY KEY, attrs jsonb, counts integer[], tags text[], meta json",
        seeded=target == "non-empty",
    )
    cfg = _table(pg_schema, "nested", path, mode=mode)
    columns = "code, attrs, counts, tags, meta::text"
    rows = _sync_and_resync(pg_dsn, cfg, pg_schema, "nested", columns, seeded=target == "non-empty")
    assert rows == [
        (
            "A",
            # nested plain scalars: JSON numbers/booleans when they spell one, else strings as written
            {"price": 1.5, "code": "0123", "label": "1", "on": True, "yes": "yes", "none": None, "list": [1, "two"]},
            [1, 2, 3],
            ["0123", "a,b", 'q"uote', "back\\slash", None, "NO", "pad"],
            '{"b": 1.50, "a": ["x", 2]}',  # json keeps the text: key order and the number as written
        ),
        ("B", ["a", {"b": 2}], [[1, 2], [3, None]], [], '[1, "1", "yes"]'),
        ("C", {"given": "as JSON text"}, [4, 5], ["x", "y"], '"a JSON string"'),
        ("D", None, None, None, None),
    ]
    stored = _pg(
        pg_dsn,
        sql.SQL("SELECT attrs->>'price' FROM {}.nested WHERE code = 'A'").format(sql.Identifier(pg_schema)),
    )
    assert stored == [("1.50",)]  # the number exactly as written (psycopg reads JSON numbers as floats)


# ----------------------------------------------------------------------------------------------------------
# Size: a 200 MB file streams in bounded memory
# ----------------------------------------------------------------------------------------------------------

_MEMORY_SCRIPT = """
import json, sys
from airflow_provider_refdata.config import ReferenceSyncConfig
from airflow_provider_refdata.services.source_yaml import YamlFileSource
from airflow_provider_refdata.services.sync import ReferenceSyncService
cfg = ReferenceSyncConfig.model_validate(json.loads(sys.argv[1])).tables[0]
result = ReferenceSyncService().sync_table(cfg, YamlFileSource(), sys.argv[2])
print(json.dumps({
    # VmHWM is this process image's own peak (ru_maxrss also counts the parent's RSS before exec).
    "peak_rss_mb": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024,
    "error": result.error, "skipped": result.skipped_reason,
    "read": result.rows_read, "inserted": result.rows_inserted,
}))
"""

BIG_ROWS = 2_500_000


def test_a_200_mb_file_is_streamed_in_bounded_memory(pg_dsn, pg_schema, tmp_path):
    path = tmp_path / "big.yml"
    with path.open("w", encoding="utf-8") as out:
        out.write('schema_version: "1.0"\ndescription: big\ndata:\n')
        for start in range(0, BIG_ROWS, 100_000):
            out.write(
                "".join(
                    f"  - {{code: C{i:08d}, name: Reference item {i:07d} of the list, kind: K{i % 50:02d}, "
                    f"amount: {i % 1000}.50}}\n"
                    for i in range(start, start + 100_000)
                )
            )
    assert path.stat().st_size >= 200 * 10**6
    _create(pg_dsn, pg_schema, "big", "code text PRIMARY KEY, name text, kind text, amount numeric(10,2)", seeded=False)
    document = _document(pg_schema, "big", path)  # no columns configured: read twice (columns, then rows)
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, json.dumps(document), pg_dsn],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["error"], report["skipped"], report["read"], report["inserted"]) == (None, None, BIG_ROWS, BIG_ROWS)
    print(f"200 MB file, {BIG_ROWS} rows: peak RSS {report['peak_rss_mb']:.0f} MB")  # shown with -s
    assert report["peak_rss_mb"] < 300, report
    sample = _pg(
        pg_dsn,
        sql.SQL(
            "SELECT code, name, kind, amount FROM {}.big WHERE code IN ('C00000123', 'C02499999') ORDER BY code"
        ).format(sql.Identifier(pg_schema)),
    )
    assert sample == [
        ("C00000123", "Reference item 0000123 of the list", "K23", Decimal("123.50")),
        ("C02499999", "Reference item 2499999 of the list", "K49", Decimal("999.50")),
    ]
