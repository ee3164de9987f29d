"""foreign_keys.yml in the existing format: what it means here, and what is refused with which message.

Every case is a ``backfill_columns`` block of the ``fk_plan`` FK (``计划代码`` → ``年金计划号``) as users
write it, loaded from a real file.  Accepted cases list the backfill columns the model keeps; refused cases
list the key path, the offending value, the text of the line the error points at, and message fragments.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from airflow_provider_refdata.config import Aggregation, ForeignKeyConfig, load_fk_configs
from airflow_provider_refdata.exceptions import RefdataConfigError

HEADER = """\
schema_version: "1.2"
domains:
  x:
    foreign_keys:
      - name: fk_plan
        source_column: 计划代码
        target_schema: business
        target_table: 年金计划
        target_key: 年金计划号
"""
FK = "domains.x.foreign_keys[0]"


def _write(tmp_path: Path, backfill: str | None) -> Path:
    text = HEADER
    if backfill == "":
        text += "        backfill_columns: []\n"
    elif backfill is not None:
        text += "        backfill_columns:\n" + textwrap.indent(textwrap.dedent(backfill), " " * 10)
    path = tmp_path / "foreign_keys.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _kept(config: ForeignKeyConfig) -> list[tuple[str, str, str]]:
    return [(c.source, c.target, c.aggregation.type) for c in config.backfill_columns]


# ---------------------------------------------------------------------------------------------------------
# accepted
# ---------------------------------------------------------------------------------------------------------

ACCEPTED = [
    pytest.param(
        """\
        - {source: 计划代码, target: 年金计划号}
        - {source: 计划名称, target: 计划名称}
        """,
        [("计划名称", "计划名称", "first")],
        id="key-mapped first column is dropped",
    ),
    pytest.param(
        """\
        - {source: 计划代码, target: 年金计划号}
        """,
        [],
        id="key-only: just the key-mapped column",
    ),
    pytest.param(
        """\
        - {source: 计划代码, target: 年金计划号, optional: false, aggregation: {type: first}}
        """,
        [],
        id="key-mapped column spelling out the defaults",
    ),
    pytest.param("", [], id="backfill_columns: []"),
    pytest.param(None, [], id="backfill_columns absent"),
    pytest.param(
        """\
        - {source: 计划代码, target: 年金计划号}
        - source: 月度
          target: 说明
          aggregation: {type: template, template: "{月度:%y%m}新建"}
        - source: 期末资产规模
          target: 规模
          aggregation: {type: template, template: "{期末资产规模:,.2f} 元 ({比例:.1%})"}
        """,
        [("月度", "说明", "template"), ("期末资产规模", "规模", "template")],
        id="templates with date and number specs (the lambda replacement)",
    ),
]


@pytest.mark.parametrize(("backfill", "kept"), ACCEPTED)
def test_existing_format_loads(tmp_path: Path, backfill: str | None, kept: list[tuple[str, str, str]]) -> None:
    (config,) = load_fk_configs(_write(tmp_path, backfill), "x")
    assert (config.source_column, config.target_key) == ("计划代码", "年金计划号")
    assert _kept(config) == kept


def test_dropping_the_key_column_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="airflow_provider_refdata.config"):
        config = ForeignKeyConfig(
            name="fk_plan",
            source_column="计划代码",
            target_table="年金计划",
            target_key="年金计划号",
            backfill_columns=[{"source": "计划代码", "target": "年金计划号"}],
        )
    assert config.backfill_columns == []
    (record,) = [r for r in caplog.records if "adds nothing" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert "'fk_plan'" in record.getMessage() and "年金计划号" in record.getMessage()


def test_template_fields_carry_the_spec_kind() -> None:
    aggregation = Aggregation(type="template", template="{月度:%y%m}新建 {金额:,.2f} {比例:.1%} {名称}")
    assert [(f.literal, f.column, f.spec, f.kind) for f in aggregation.template_fields] == [
        ("", "月度", "%y%m", "date"),
        ("新建 ", "金额", ",.2f", "number"),
        (" ", "比例", ".1%", "number"),
        (" ", "名称", "", None),
    ]
    assert aggregation.template_columns == ["月度", "金额", "比例", "名称"]


# ---------------------------------------------------------------------------------------------------------
# refused
# ---------------------------------------------------------------------------------------------------------

REFUSED = [
    pytest.param(
        """\
        - {source: 计划名称, target: 年金计划号}
        """,
        f"{FK}.backfill_columns[0].source",
        "计划名称",
        "- {source: 计划名称, target: 年金计划号}",
        ["target_key '年金计划号' from '计划名称'", "source_column '计划代码'"],
        id="key-mapped column from another source",
    ),
    pytest.param(
        """\
        - source: 计划代码
          target: 年金计划号
          aggregation: {type: max_by, order_column: 期末资产规模}
        """,
        f"{FK}.backfill_columns[0].aggregation",
        "max_by",
        "aggregation: {type: max_by, order_column: 期末资产规模}",
        ["would have no effect", "'年金计划号'"],
        id="key-mapped column with an aggregation",
    ),
    pytest.param(
        """\
        - {source: 计划代码, target: 年金计划号}
        - {source: 计划名称, target: 计划名称}
        - {source: 计划全称, target: 计划名称}
        """,
        f"{FK}.backfill_columns[2].target",
        "计划名称",
        "- {source: 计划全称, target: 计划名称}",
        ["already filled by backfill_columns[1]"],
        id="duplicate target counts the dropped key column",
    ),
    pytest.param(
        """\
        - {source: 计划代码, target: 年金计划号}
        - source: 月度
          target: 说明
          aggregation: {type: lambda, code: "lambda x: x.strftime('%y%m') + '新建'"}
        """,
        f"{FK}.backfill_columns[1].aggregation.type",
        "lambda",
        """aggregation: {type: lambda, code: "lambda x: x.strftime('%y%m') + '新建'"}""",
        ["foreign key 'fk_plan'", "backfill column '说明'", "never", "type: template", "{月度:%y%m}新建"],
        id="lambda",
    ),
    pytest.param(
        """\
        - source: 业务类型
          target: 管理资格
          aggregation:
            type: jsonb_append
        """,
        f"{FK}.backfill_columns[0].aggregation.type",
        "jsonb_append",
        "type: jsonb_append",
        ["foreign key 'fk_plan'", "backfill column '管理资格'", "concat_distinct", "text column"],
        id="jsonb_append",
    ),
    pytest.param(
        """\
        - source: 月度
          target: 说明
          aggregation: {type: template, template: "{月度:%Q}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{月度:%Q}",
        'aggregation: {type: template, template: "{月度:%Q}"}',
        ["format spec '%Q'", "strftime code '%Q'"],
        id="unknown strftime code",
    ),
    pytest.param(
        """\
        - source: 月度
          target: 说明
          aggregation: {type: template, template: "{月度:%-m}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{月度:%-m}",
        'aggregation: {type: template, template: "{月度:%-m}"}',
        ["non-portable strftime code '%-'"],
        id="platform-only strftime code",
    ),
    pytest.param(
        """\
        - source: 月度
          target: 说明
          aggregation: {type: template, template: "{月度:%Y%}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{月度:%Y%}",
        'aggregation: {type: template, template: "{月度:%Y%}"}',
        ["format spec '%Y%'", "lone '%'"],
        id="date spec ending in a lone percent",
    ),
    pytest.param(
        """\
        - source: 金额
          target: 说明
          aggregation: {type: template, template: "{金额:,.2x}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{金额:,.2x}",
        'aggregation: {type: template, template: "{金额:,.2x}"}',
        ["format spec ',.2x'", "not a valid number format spec"],
        id="precision on an integer number spec",
    ),
    pytest.param(
        """\
        - source: 金额
          target: 说明
          aggregation: {type: template, template: "{金额:>10s}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{金额:>10s}",
        'aggregation: {type: template, template: "{金额:>10s}"}',
        ["format spec '>10s'", "not a valid number format spec"],
        id="string spec",
    ),
    pytest.param(
        """\
        - source: 金额
          target: 说明
          aggregation: {type: template, template: "{金额:{宽度}}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{金额:{宽度}}",
        'aggregation: {type: template, template: "{金额:{宽度}}"}',
        ["nests a placeholder"],
        id="nested placeholder in the spec",
    ),
    pytest.param(
        """\
        - source: 月度
          target: 说明
          aggregation: {type: template, template: "{月度!r}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{月度!r}",
        'aggregation: {type: template, template: "{月度!r}"}',
        ["uses a conversion"],
        id="conversion",
    ),
    pytest.param(
        """\
        - source: 月度
          target: 说明
          aggregation: {type: template, template: "{月度.year:%y}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{月度.year:%y}",
        'aggregation: {type: template, template: "{月度.year:%y}"}',
        ["attribute access"],
        id="attribute access with a spec",
    ),
    pytest.param(
        """\
        - source: 月度
          target: 说明
          aggregation: {type: template, template: "{0:%y}"}
        """,
        f"{FK}.backfill_columns[0].aggregation.template",
        "{0:%y}",
        'aggregation: {type: template, template: "{0:%y}"}',
        ["is positional"],
        id="positional with a spec",
    ),
]


@pytest.mark.parametrize(("backfill", "key_path", "value", "line_text", "fragments"), REFUSED)
def test_existing_format_refusal_names_file_line_key_path_and_value(
    tmp_path: Path, backfill: str, key_path: str, value: str, line_text: str, fragments: list[str]
) -> None:
    path = _write(tmp_path, backfill)
    with pytest.raises(RefdataConfigError) as raised:
        load_fk_configs(path, "x")
    error = raised.value
    lines = path.read_text(encoding="utf-8").splitlines()
    assert (error.file, error.key_path, error.value) == (str(path), key_path, value)
    assert lines[error.line - 1].strip() == line_text
    text = str(error)
    assert text.startswith(f"{path}, line {error.line}: {key_path}: ")
    for fragment in fragments:
        assert fragment in text
