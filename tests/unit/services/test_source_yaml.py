"""YamlFileSource without a server: values as written, refusals naming file/line/row/column, aliases, streaming.

The sync through the real PostgreSQL is in tests/integration/services/test_sync_yaml_fidelity.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from airflow_provider_refdata.config import ReferenceSyncConfig, load_fk_domains, load_sync_config
from airflow_provider_refdata.exceptions import RefdataConfigError
from airflow_provider_refdata.services import source_yaml
from airflow_provider_refdata.services.source_yaml import MAX_DEPTH, YamlFileSource
from airflow_provider_refdata.services.sources import SourceSkipped


def _cfg(path: Path, columns: list[str] | None = None, key: str | list[str] = "code"):
    source: dict = {"file_path": str(path), "schema_version": "1.0"}
    if columns is not None:
        source["columns"] = columns
    return ReferenceSyncConfig.model_validate(
        {
            "tables": [
                {
                    "name": "t",
                    "target_table": "t",
                    "primary_key": key,
                    "source_type": "config_file",
                    "source_config": source,
                }
            ]
        }
    ).tables[0]


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _read(tmp_path: Path, data: str, *, types: dict[str, str] | None = None, columns: list[str] | None = None):
    """(columns, rows) of a file whose ``data:`` is ``data``, with the target types the service would pass."""
    path = _file(tmp_path, 'schema_version: "1.0"\ndata:\n' + data)
    with YamlFileSource().stream(_cfg(path, columns), None, 3) as read:
        read.target_types = types
        return read.columns, [row for batch in read.batches for row in batch]


def _refused(tmp_path: Path, text: str, **kwargs) -> str:
    path = _file(tmp_path, text)
    with pytest.raises(SourceSkipped) as raised:
        with YamlFileSource().stream(_cfg(path, **kwargs), None, 3) as read:
            read.target_types = {}
            list(read.batches)
    assert str(path) in str(raised.value)
    return str(raised.value)


# ----------------------------------------------------------------------------------------------------------
# scalars
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("0123", "0123"),  # YAML 1.1: 83
        ("12:30", "12:30"),  # YAML 1.1: 750
        ("NO", "NO"),  # YAML 1.1: False
        ("1_000", "1_000"),  # YAML 1.1: 1000
        ("1.50", "1.50"),  # YAML 1.1: 1.5
        ("2024-01-15", "2024-01-15"),  # YAML 1.1: a date
        ("2024-01-15 10:00:00+08", "2024-01-15 10:00:00+08"),
        ("0x1F", "0x1F"),
        ("1e3", "1e3"),
        ("+12", "+12"),
        (".inf", ".inf"),
        ("true", "true"),
        ("'0123'", "0123"),
        ('"tab\\there"', "tab\there"),
        ("'  trimmed  '", "trimmed"),
        ("''", ""),
        ("'null'", "null"),
        ("'~'", "~"),
        ("'.nan'", ".nan"),
        ("!!str 0777", "0777"),
        ("!!int 0777", "0777"),
        ("~", None),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("", None),
        (".nan", None),
        (".NaN", None),
        ("!!null ''", None),
        ("|\n      two\n      lines", "two\nlines"),
        (">-\n      folded\n      text", "folded text"),
    ],
)
def test_scalars_are_the_text_as_written(tmp_path, written, read):
    assert _read(tmp_path, f"  - code: A\n    v: {written}\n") == (["code", "v"], [("A", read)])


def test_keys_are_their_text_too(tmp_path):
    columns, rows = _read(tmp_path, "  - {code: 0123, yes: 1, 1.0: x, null: y}\n")
    assert columns == ["code", "yes", "1.0", "null"] and rows == [("0123", "1", "x", "y")]


def test_columns_are_the_union_in_order_of_appearance_or_the_configured_ones(tmp_path):
    data = "  - {code: A, b: 1}\n  - {code: B, c: 2}\n  - {a: 3, code: C}\n"
    assert _read(tmp_path, data) == (
        ["code", "b", "c", "a"],
        [("A", "1", None, None), ("B", None, "2", None), ("C", None, None, "3")],
    )
    assert _read(tmp_path, data, columns=["a", "b", "c", "code"])[1] == [
        (None, "1", None, "A"),
        (None, None, "2", "B"),
        ("3", None, None, "C"),
    ]


def test_merge_keys_fill_what_a_row_does_not_say(tmp_path):
    path = _file(
        tmp_path,
        'schema_version: "1.0"\n'
        "base: &base {kind: K, flag: NO, note: base}\n"
        "more: &more {note: more, extra: 0123}\n"
        "data:\n"
        "  - {<<: *base, code: A}\n"
        "  - {code: B, note: own, <<: [*more, *base]}\n",
    )
    columns, rows = YamlFileSource().load(_cfg(path))
    assert columns == ["code", "kind", "flag", "note", "extra"]
    assert rows == [("A", "K", "NO", "base", None), ("B", "K", "NO", "own", "0123")]


def test_schema_version_is_compared_as_text(tmp_path):
    path = _file(tmp_path, "data:\n  - {code: A}\nschema_version: 1.0\n")  # after the data, plain: still '1.0'
    assert YamlFileSource().load(_cfg(path)) == (["code"], [("A",)])
    path.write_text("schema_version: 1.00\ndata: []\n")  # YAML 1.1 read this as 1.0
    with pytest.raises(
        SourceSkipped, match=r"line 1, declares schema_version '1\.00', the configuration expects '1\.0'"
    ):
        YamlFileSource().load(_cfg(path))


# ----------------------------------------------------------------------------------------------------------
# lists and mappings
# ----------------------------------------------------------------------------------------------------------


def test_lists_and_mappings_become_json_for_json_columns(tmp_path):
    data = (
        "  - code: A\n"
        "    j: {price: 1.50, code: 0123, label: '1', on: true, off: FALSE, yes: yes, none: ~, nan: .nan, neg: -0.5e3,"
        " list: [1, '2', [x]], 文字: 值}\n"
        '  - {code: B, j: [], k: {}, s: \'{"given": "as text"}\'}\n'
    )
    _, rows = _read(tmp_path, data, types={"j": "jsonb", "k": "json", "s": "jsonb"})
    assert rows == [
        (
            "A",
            '{"price": 1.50, "code": "0123", "label": "1", "on": true, "off": false, "yes": "yes", "none": null, '
            '"nan": null, "neg": -0.5e3, "list": [1, "2", ["x"]], "文字": "值"}',
            None,
            None,
        ),
        ("B", "[]", "{}", '{"given": "as text"}'),
    ]


def test_lists_become_array_literals_for_array_columns(tmp_path):
    data = (
        '  - {code: A, a: [0123, "a,b", "q\\"uote", back\\slash, ~, " pad ", "", NULL], n: [[1, 2], [3, ~]], e: []}\n'
    )
    _, rows = _read(tmp_path, data, types={"a": "text[]", "n": "integer[]", "e": "character varying(5)[]"})
    assert rows == [
        ("A", '{"0123","a,b","q\\"uote","back\\\\slash",NULL,"pad","",NULL}', '{{"1","2"},{"3",NULL}}', "{}")
    ]
    _, rows = _read(tmp_path, "  - {code: A, j: [{a: 1}, [1], x]}\n", types={"j": "jsonb[]"})
    assert rows == [("A", '{"{\\"a\\": 1}","[1]","\\"x\\""}')]  # each element JSON


@pytest.mark.parametrize(
    ("types", "message"),
    [
        (None, "the target's column types were not given to the reader"),
        ({"v": "text"}, "which a column of type text cannot hold"),
        ({"v": "integer"}, "which a column of type integer cannot hold"),
    ],
)
def test_a_list_or_mapping_is_refused_elsewhere_naming_file_line_row_and_column(tmp_path, types, message):
    for value, kind in (("[a, b]", "is a list (['a', 'b'])"), ("{k: v}", "is a mapping ({'k': 'v'})")):
        with pytest.raises(SourceSkipped) as raised:
            _read(tmp_path, f"  - {{code: A, v: x}}\n  - code: B\n    v: {value}\n", types=types)
        text = str(raised.value)
        assert text.startswith(f"reference file {tmp_path / 'data.yml'}, line 5: data[1].v: {kind}")
        assert message in text


def test_a_mapping_is_refused_for_an_array_column(tmp_path):
    with pytest.raises(SourceSkipped, match=r"line 3: data\[0\]\.v: is a mapping .*of type text\[\] cannot hold"):
        _read(tmp_path, "  - {code: A, v: {k: v}}\n", types={"v": "text[]"})
    with pytest.raises(SourceSkipped, match=r"data\[0\]\.v: holds a mapping .*an array of text cannot hold"):
        _read(tmp_path, "  - {code: A, v: [{k: v}]}\n", types={"v": "text[]"})


# ----------------------------------------------------------------------------------------------------------
# refusals
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'schema_version: "1.0"\ndata:\n  - {code: A, code: B}\n',
            "line 3: data[0].code: duplicate key 'code' (first at line 3",
        ),
        (
            'schema_version: "1.0"\ndata:\n  - code: A\n    x: 1\n    y: 2\n    x: 3\n',
            "line 6: data[0].x: duplicate key 'x' (first at line 4",
        ),
        ('schema_version: "1.0"\ndata:\n  - {code: A, j: {a: 1, a: 2}}\n', "line 3: data[0].j.a: duplicate key 'a'"),
        ('schema_version: "1.0"\nschema_version: "1.0"\ndata: []\n', "line 2: schema_version: duplicate key"),
        ('schema_version: "1.0"\ndata:\n  - {code: A, v: "a\\0b"}\n', "line 3: data[0].v: 'a\\x00b' contains a NUL"),
        ('schema_version: "1.0"\ndata:\n  - {code: A, v: *nowhere}\n', "line 3: data[0].v: undefined alias *nowhere"),
        ('schema_version: "1.0"\ndata:\n  - &r {code: A, v: [*r]}\n', "line 3: data[0].v[0]: recursive alias *r"),
        ('schema_version: "1.0"\ndata:\n  - {code: A, v: !custom x}\n', "line 3: data[0].v: unsupported tag '!custom'"),
        ('schema_version: "1.0"\ndata:\n  - {code: A, [k]: v}\n', "line 3: data[0]: a key must be a plain value"),
        (
            'schema_version: "1.0"\ndata:\n  - {code: A}\n  - just text\n',
            "line 4: data[1]: 'data' must be a list of mappings",
        ),
        ('schema_version: "1.0"\ndata: {code: A}\n', "line 2: data: 'data' must be a list of mappings"),
        ('schema_version: "1.0"\n', "'data' must be a list of mappings (the key is missing)"),
        ("data: []\n", "declares schema_version None, the configuration expects '1.0'"),
        ("", "the top level must be a mapping"),
        ("- a\n", "line 1: the top level must be a mapping"),
        ('schema_version: "1.0"\ndata: []\n---\nb: 1\n', "more than one YAML document"),
        (
            'schema_version: "1.0"\ndata: [ {code: A\n',
            "is not valid YAML (line 3, column 1): did not find expected ',' or '}'",
        ),
        ('schema_version: "1.0"\ndata:\n  - {v: 1}\n', "line 3: data[0] has no value for primary key column 'code'"),
        (
            'schema_version: "1.0"\ndata:\n  - {code: " "}\n',
            "data[0] has no value for primary key column 'code' (got ' ')",
        ),
    ],
)
def test_refusals_name_file_line_and_key_path(tmp_path, text, expected):
    assert expected in _refused(tmp_path, text)


def test_unknown_columns_are_refused_when_columns_are_configured(tmp_path):
    reason = _refused(
        tmp_path, 'schema_version: "1.0"\ndata:\n  - {code: A}\n  - {code: B, colour: red}\n', columns=["code"]
    )
    assert "line 4: data[1] has unknown column 'colour' (known: code)" in reason


def test_nesting_is_bounded(tmp_path):
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert f"nested deeper than {MAX_DEPTH} levels" in _refused(
        tmp_path, f'schema_version: "1.0"\ndata:\n  - {{code: A, v: {deep}}}\n'
    )


def _bomb(levels: int = 10) -> str:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_a_data_file_is_refused_at_once(tmp_path):
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        reason = _refused(tmp_path, 'schema_version: "1.0"\n' + _bomb() + "data:\n  - {code: A, v: *l9}\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5 and peak < 20 * 2**20
    assert "line 6: l4[1]: alias *l3 expands to 7381 nodes" in reason and "more than 10000 nodes" in reason


def test_the_alias_bound_is_per_row_and_configurable(tmp_path):
    anchor = "base: &base {" + ", ".join(f"c{i}: {i}" for i in range(20)) + "}\n"
    rows = "".join(f"  - {{<<: *base, code: K{i}}}\n" for i in range(2000))  # 2000 × 21 nodes, 21 per row
    path = _file(tmp_path, 'schema_version: "1.0"\n' + anchor + "data:\n" + rows)
    columns, loaded = YamlFileSource().load(_cfg(path))
    assert len(loaded) == 2000 and len(columns) == 21
    with pytest.raises(SourceSkipped, match=r"line 4: data\[0\]\.<<: alias \*base expands to 21 nodes"):
        YamlFileSource(max_alias_nodes=20).load(_cfg(path))


def test_a_missing_file_lists_every_path_tried(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (project / "config" / "reference_sync.yml").write_text(
        "tables:\n"
        "  - name: lines\n"
        "    target_table: lines\n"
        "    primary_key: code\n"
        "    source_type: config_file\n"
        "    source_config: {file_path: reference_data/lines.yml, schema_version: '1.0'}\n",
        encoding="utf-8",
    )
    table = load_sync_config(project / "config" / "reference_sync.yml").table("lines")
    tried = [project / "config" / "reference_data" / "lines.yml", project / "reference_data" / "lines.yml"]
    tried.append(elsewhere / "reference_data" / "lines.yml")
    with pytest.raises(SourceSkipped) as raised:
        YamlFileSource().load(table)
    assert str(raised.value) == f"reference file not found: {tried[0]} (tried: {', '.join(map(str, tried))})"


def test_a_missing_file_of_a_hand_built_configuration_names_the_resolved_path(tmp_path):
    table = _cfg(Path("data/lines.yml"))
    with pytest.raises(SourceSkipped) as raised:
        YamlFileSource(base_path=tmp_path).load(table)
    assert str(raised.value) == f"reference file not found: {tmp_path / 'data' / 'lines.yml'}"


# ----------------------------------------------------------------------------------------------------------
# streaming
# ----------------------------------------------------------------------------------------------------------


def test_rows_are_streamed_one_batch_at_a_time(tmp_path):
    rows = 60_000
    path = tmp_path / "big.yml"
    with path.open("w", encoding="utf-8") as out:
        out.write('schema_version: "1.0"\ndata:\n')
        out.writelines(f"  - {{code: C{i:06d}, name: item {i} with some text, amount: {i}.50}}\n" for i in range(rows))
    tracemalloc.start()
    try:
        count = batches = 0
        with YamlFileSource().stream(_cfg(path), None, 1000) as read:
            assert read.columns == ["code", "name", "amount"]
            for batch in read.batches:
                count += len(batch)
                batches += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (count, batches) == (rows, 60)
    assert peak < 8 * 2**20  # the whole file as rows would be tens of MB; one batch is a few hundred kB


def test_batches_are_lazy_and_read_after_target_types_are_set(tmp_path):
    path = _file(tmp_path, 'schema_version: "1.0"\ndata:\n  - {code: A, j: {k: 1}}\n')
    with YamlFileSource().stream(_cfg(path), None, 10) as read:
        read.target_types = {"code": "text", "j": "jsonb"}  # set after stream() returned, before iterating
        assert list(read.batches) == [[("A", '{"k": 1}')]]


# ----------------------------------------------------------------------------------------------------------
# module layout
# ----------------------------------------------------------------------------------------------------------


def test_sources_re_exports_the_reader_and_either_module_imports_first():
    from airflow_provider_refdata.services import sources

    assert sources.YamlFileSource is source_yaml.YamlFileSource
    for first in ("source_yaml", "sources"):
        code = (
            f"import airflow_provider_refdata.services.{first}\n"
            "from airflow_provider_refdata.services.sources import YamlFileSource\n"
            "from airflow_provider_refdata.services.source_yaml import YamlFileSource as Y\n"
            "import sys\n"
            "assert Y is YamlFileSource\n"
            "sys.exit(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))\n"
        )
        assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0, first


# ----------------------------------------------------------------------------------------------------------
# configuration files: the same alias guard
# ----------------------------------------------------------------------------------------------------------


def test_an_alias_bomb_in_reference_sync_yml_is_refused_at_once(tmp_path):
    path = tmp_path / "reference_sync.yml"
    path.write_text(_bomb() + "tables: []\n", encoding="utf-8")
    t0 = time.perf_counter()
    with pytest.raises(RefdataConfigError) as raised:
        load_sync_config(path)
    assert time.perf_counter() - t0 < 5
    error = raised.value
    assert (error.file, error.line, error.value) == (str(path), 6, "*l4")
    assert "alias *l4 expands to 66430 nodes" in str(error) and "more than 100000" in str(error)


def test_an_alias_bomb_in_foreign_keys_yml_is_refused_at_once(tmp_path):
    path = tmp_path / "foreign_keys.yml"
    path.write_text("domains:\n  x:\n    foreign_keys: []\n" + _bomb(12), encoding="utf-8")
    t0 = time.perf_counter()
    with pytest.raises(RefdataConfigError, match=r"foreign_keys\.yml, line 9: alias \*l4 expands"):
        load_fk_domains(path)
    assert time.perf_counter() - t0 < 5


def test_recursive_aliases_in_configuration_are_refused(tmp_path):
    path = tmp_path / "reference_sync.yml"
    path.write_text("tables: &t\n  - *t\n", encoding="utf-8")
    with pytest.raises(RefdataConfigError, match=r"line 2: recursive alias \*t"):
        load_sync_config(path)


def test_ordinary_anchors_in_configuration_still_work(tmp_path):
    # 300 tables sharing one 80-node table through an alias: 24,000 nodes of expansion, well inside the bound.
    columns = ", ".join(["code", *(f"c{i}" for i in range(59))])
    first = (
        "  - &t0 {name: t0, target_table: t0, primary_key: code, source_type: config_file, "
        f"source_config: {{file_path: f0.yml, schema_version: '1.0', columns: [{columns}]}}}}\n"
    )
    others = "".join(f"  - {{<<: *t0, name: t{i}, target_table: t{i}}}\n" for i in range(1, 300))
    path = tmp_path / "reference_sync.yml"
    path.write_text("tables:\n" + first + others, encoding="utf-8")
    config = load_sync_config(path)
    assert [t.name for t in config.tables][-2:] == ["t298", "t299"]
    assert config.tables[299].source_config.columns == ["code", *(f"c{i}" for i in range(59))]
