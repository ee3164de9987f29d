"""Deterministic, realistic sample data for the demo, the docker-compose stack and the end-to-end test.

Nothing is downloaded: a seeded ``random.Random`` invents Chinese company, plan, portfolio and branch names.
The same seed and :class:`SampleSpec` always give the same rows, so the demo, docker-compose and the tests
all see the same world:

- legacy MySQL database (``sql/legacy/legacy.sql``): ``annuity_plan`` (~1,200 plans), ``portfolio_plan``
  (~1,400 portfolios, each pointing at a plan) and ``organization`` (38 branches G00–G37), each with
  ``updated_at``;
- one month of annuity-performance facts (~37,000 rows, the size of a real monthly file) whose FK columns are
  mostly covered by the legacy data: a few percent of the plans and portfolios are *new* (held back from
  MySQL, so the backfill must derive them), and some organization codes are blank or ``(空白)``.
  Product-line codes come from ``config/reference_data/product_lines.yml``.

A *mutation round* (``mutate``) simulates a day in the legacy system: a few plans, portfolios and one branch
change, and two of the held-back plans (with their portfolios) are finally entered.  Touched rows get
``updated_at = NOW(6)``, so the next incremental sync reads only them and promotes the auto-derived rows of
the plans that were entered.

Command line::

    python -m devtools.sample_data load   --mysql-dsn mysql://u:pw@127.0.0.1:3306/legacy
    python -m devtools.sample_data mutate --mysql-dsn mysql://u:pw@127.0.0.1:3306/legacy
    python -m devtools.sample_data facts  --out data/annuity_performance_202411.csv --month 2024-11 [--excel]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
LEGACY_DDL = REPO_ROOT / "sql" / "legacy" / "legacy.sql"
DEFAULT_CONFIG_DIR = REPO_ROOT / "config"

# The fact file's columns, in file order (config/foreign_keys.yml, domain annuity_performance).
FACT_COLUMNS = [
    "月度",
    "计划代码",
    "计划名称",
    "计划类型",
    "客户名称",
    "组合代码",
    "组合名称",
    "组合类型",
    "机构代码",
    "机构名称",
    "产品线代码",
    "业务类型",
    "期末资产规模",
    "主拓代码",
    "主拓机构",
]
BLANK_MARKER = "(空白)"

# G00 is head office; the other 37 are provincial / city branches.
BRANCH_PLACES = (
    "总公司 北京 上海 天津 重庆 广东 深圳 江苏 浙江 宁波 山东 青岛 福建 厦门 "
    "河北 河南 湖北 湖南 四川 陕西 辽宁 大连 吉林 黑龙江 安徽 江西 山西 内蒙古 "
    "广西 海南 贵州 云南 甘肃 青海 宁夏 新疆 苏州 西藏"
).split()
_CITY_PREFIXES = (
    "北京 上海 广州 深圳 杭州 南京 武汉 成都 西安 天津 重庆 苏州 青岛 厦门 长沙 "
    "郑州 济南 合肥 福州 昆明 沈阳 大连 宁波 无锡"
).split()
_BRANDS = (
    "华信 中联 恒泰 国泰 远大 金桥 长城 东方 海通 新华 宏达 瑞丰 天元 安盛 鼎盛 "
    "博远 嘉禾 泰和 永安 中科 华电 国能 建工 中铁 万通 华润 云海 星河 汇丰 德信 "
    "明珠 启航 正大 君安 富华 银河"
).split()
_INDUSTRIES = (
    "科技 能源 电力 建设 交通 投资 医药 制造 钢铁 化工 通信 物流 环保 食品 地产 水务 港务 机械 电子 矿业"
).split()
_COMPANY_SUFFIXES = ["有限公司", "股份有限公司", "集团有限公司", "集团股份有限公司"]
_PLAN_TYPES = [("单一计划", 0.88), ("集合计划", 0.12)]
_PORTFOLIO_TYPES = [("固定收益型", "固收"), ("含权益型", "含权"), ("权益型", "权益"), ("货币型", "货币")]
# Product line -> the fact file's 业务类型 label (the short form people type in the monthly file).
_BUSINESS_TYPES = {
    "PL201": "企年受托", "PL202": "企年投资", "PL203": "企年账管", "PL204": "企年托管", "PL205": "职年受托",
    "PL206": "职年投资", "PL207": "职年账管", "PL208": "职年托管", "PL209": "养老保障", "PL210": "个人养老金",
    "PL211": "咨询服务", "PL301": "团体养老",
}  # fmt: skip

# A plan belongs to one family of product lines (enterprise annuity, occupational annuity, other pensions).
_PLAN_FAMILIES = [
    ((("PL201", "PL202", "PL203", "PL204"), "企业年金"), 0.70),
    ((("PL205", "PL206", "PL207", "PL208"), "职业年金"), 0.15),
    ((("PL209", "PL210", "PL211"), "养老保障"), 0.15),
]

# Legacy timestamps are spread over ten months of 2024 (always before any incremental-sync watermark of a run).
_LEGACY_EPOCH = dt.datetime(2024, 1, 1, 8, 0, 0)
_LEGACY_SPAN_SECONDS = 300 * 24 * 3600


def previous_month(timezone: str = "Asia/Shanghai") -> dt.date:
    """The first day of the month before today's in ``timezone``."""
    first_of_this_month = dt.datetime.now(ZoneInfo(timezone)).date().replace(day=1)
    return (first_of_this_month - dt.timedelta(days=1)).replace(day=1)


@dataclass(frozen=True)
class SampleSpec:
    """How big the sample world is.  The defaults are the demo's (a real month's size)."""

    seed: int = 20241130
    plans: int = 1200  # plans in the legacy database
    extra_portfolio_ratio: float = 0.17  # portfolios beyond one per plan (1,200 plans -> ~1,400 portfolios)
    fact_rows: int = 37_000
    new_plan_ratio: float = 0.03  # plans in the facts that the legacy database does not have (yet)
    new_portfolio_ratio: float = 0.02  # extra new portfolios of *existing* plans, held back the same way
    blank_org_ratio: float = 0.012  # fact rows with an empty 机构代码
    blank_marker_org_ratio: float = 0.012  # fact rows with 机构代码 '(空白)'
    fact_plan_share: float = 0.92  # share of the legacy plans that appear in this month's facts
    # The previous month, like the annuity-performance DAG's default, so a trigger with an empty form finds
    # the file.  Only the 月度 value and the file name depend on it; the rows do not.
    month: dt.date = field(default_factory=lambda: previous_month())
    config_dir: Path = DEFAULT_CONFIG_DIR

    @classmethod
    def small(cls, **overrides) -> SampleSpec:
        """A quick world for tests: 120 plans, 3,000 fact rows, the same proportions."""
        values = {"plans": 120, "fact_rows": 3000, **overrides}
        return cls(**values)


@dataclass(frozen=True)
class Plan:
    code: str
    name: str
    plan_type: str
    client: str
    branch_code: str
    branch_name: str
    product_lines: tuple[str, ...]
    qualification: str
    updated_at: dt.datetime
    in_legacy: bool


@dataclass(frozen=True)
class Portfolio:
    code: str
    name: str
    portfolio_type: str
    plan_code: str
    updated_at: dt.datetime
    in_legacy: bool


@dataclass(frozen=True)
class Branch:
    code: str
    name: str
    updated_at: dt.datetime


@dataclass
class SampleWorld:
    """Everything the generator invents for one spec; facts are built on first use."""

    spec: SampleSpec
    plans: list[Plan]
    portfolios: list[Portfolio]
    branches: list[Branch]
    product_lines: dict[str, dict[str, str]]  # code -> row of product_lines.yml
    _fact_rows: list[dict[str, object]] | None = field(default=None, repr=False)

    @property
    def legacy_plans(self) -> list[Plan]:
        return [p for p in self.plans if p.in_legacy]

    @property
    def legacy_portfolios(self) -> list[Portfolio]:
        return [p for p in self.portfolios if p.in_legacy]

    @property
    def held_back_plans(self) -> list[Plan]:
        """Plans the facts mention but the legacy database does not have yet (sorted by code)."""
        return [p for p in self.plans if not p.in_legacy]

    @cached_property
    def plans_by_code(self) -> dict[str, Plan]:
        return {p.code: p for p in self.plans}

    def fact_rows(self) -> list[dict[str, object]]:
        if self._fact_rows is None:
            self._fact_rows = _generate_facts(self)
        return self._fact_rows


def load_product_lines(config_dir: Path) -> dict[str, dict[str, str]]:
    """The product lines of ``reference_data/product_lines.yml`` (owned by the configuration), by code."""
    path = Path(config_dir) / "reference_data" / "product_lines.yml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {str(row["产品线代码"]): row for row in document["data"]}


def _pick_weighted(rng: random.Random, choices: Sequence[tuple[object, float]]):
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _legacy_timestamp(rng: random.Random) -> dt.datetime:
    # Whole seconds, like most legacy systems store them.
    return _LEGACY_EPOCH + dt.timedelta(seconds=rng.randrange(_LEGACY_SPAN_SECONDS))


def _company_names(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = (
            rng.choice(_CITY_PREFIXES)
            + rng.choice(_BRANDS)
            + rng.choice(_INDUSTRIES)
            + _pick_weighted(rng, [(s, w) for s, w in zip(_COMPANY_SUFFIXES, (5, 3, 2, 1), strict=True)])
        )
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _short_name(company: str) -> str:
    """``上海华信科技有限公司`` -> ``上海华信科技``: how portfolio names abbreviate the client."""
    return re.sub(r"(集团)?(股份)?有限公司$", "", company)


def _qualification(product_lines: Sequence[str]) -> str:
    # The same form foreign_keys.yml derives for new plans: distinct business types, sorted, joined by "+".
    return "+".join(sorted({_BUSINESS_TYPES.get(code, code) for code in product_lines}))


def generate(spec: SampleSpec | None = None) -> SampleWorld:
    """Invent the sample world for ``spec`` (deterministic: same spec, same world)."""
    spec = spec or SampleSpec()
    rng = random.Random(spec.seed)
    product_lines = load_product_lines(spec.config_dir)

    branches = [
        Branch(
            code=f"G{index:02d}",
            name="总公司" if place == "总公司" else f"{place}分公司",
            updated_at=_legacy_timestamp(rng),
        )
        for index, place in enumerate(BRANCH_PLACES)
    ]

    new_plan_count = max(1, round(spec.plans * spec.new_plan_ratio))
    total_plans = spec.plans + new_plan_count
    clients = _company_names(rng, total_plans)
    held_back = set(rng.sample(range(total_plans), new_plan_count))
    plans: list[Plan] = []
    for index, client in enumerate(clients):
        plan_type = _pick_weighted(rng, _PLAN_TYPES)
        branch = branches[rng.randrange(1, len(branches))] if rng.random() > 0.05 else branches[0]
        family, plan_kind = _pick_weighted(rng, _PLAN_FAMILIES)
        family_lines = [code for code in family if code in product_lines] or list(product_lines)
        lines = tuple(sorted(rng.sample(family_lines, min(len(family_lines), rng.choice((1, 2, 2, 3))))))
        if rng.random() < 0.03 and "PL301" in product_lines:
            lines = (*lines, "PL301")
        name = f"{_short_name(client)}{plan_kind}{'集合' if plan_type == '集合计划' else ''}计划"
        plans.append(
            Plan(
                code=f"P{index + 1:04d}",
                name=name,
                plan_type=plan_type,
                client=client,
                branch_code=branch.code,
                branch_name=branch.name,
                product_lines=lines,
                qualification=_qualification(lines),
                updated_at=_legacy_timestamp(rng),
                in_legacy=index not in held_back,
            )
        )

    portfolios: list[Portfolio] = []
    extra_per_plan = [0] * total_plans
    for _ in range(round(spec.plans * spec.extra_portfolio_ratio)):
        extra_per_plan[rng.randrange(total_plans)] += 1
    for plan_index, plan in enumerate(plans):
        for _ in range(1 + extra_per_plan[plan_index]):
            full_type, short_type = rng.choice(_PORTFOLIO_TYPES)
            portfolios.append(
                Portfolio(
                    code=f"S{len(portfolios) + 1:05d}",
                    name=_short_name(plan.client)
                    + short_type
                    + "组合"
                    + ("" if rng.random() < 0.7 else rng.choice("一二三")),
                    portfolio_type=full_type,
                    plan_code=plan.code,
                    updated_at=_legacy_timestamp(rng),
                    in_legacy=plan.in_legacy,
                )
            )
    # A few brand-new portfolios of existing plans (opened this month, not yet in the legacy system).
    legacy_portfolio_indexes = [i for i, p in enumerate(portfolios) if p.in_legacy]
    for index in rng.sample(legacy_portfolio_indexes, max(1, round(spec.plans * spec.new_portfolio_ratio))):
        portfolios[index] = replace(portfolios[index], in_legacy=False)
    return SampleWorld(spec=spec, plans=plans, portfolios=portfolios, branches=branches, product_lines=product_lines)


def _generate_facts(world: SampleWorld) -> list[dict[str, object]]:
    spec = world.spec
    rng = random.Random(spec.seed * 7 + 1)
    plans = world.plans_by_code
    by_plan: dict[str, list[Portfolio]] = {}
    for portfolio in world.portfolios:
        by_plan.setdefault(portfolio.plan_code, []).append(portfolio)
    legacy = [p for p in world.plans if p.in_legacy]
    active = set(rng.sample([p.code for p in legacy], round(len(legacy) * spec.fact_plan_share)))
    active |= {p.code for p in world.plans if not p.in_legacy}
    # Every held-back portfolio appears (that is what makes it "new this month"), plus portfolios of active plans.
    fact_portfolios = [p for p in world.portfolios if p.plan_code in active or not p.in_legacy]
    # Bigger portfolios have more rows: a skewed weight per portfolio, fixed for the month.
    weights = [rng.paretovariate(1.6) for _ in fact_portfolios]
    chosen = rng.choices(fact_portfolios, weights=weights, k=spec.fact_rows - len(fact_portfolios))
    chosen = fact_portfolios + chosen  # each fact portfolio at least once
    rng.shuffle(chosen)
    month = spec.month.isoformat()
    rows: list[dict[str, object]] = []
    for portfolio in chosen:
        plan = plans[portfolio.plan_code]
        roll = rng.random()
        if roll < spec.blank_org_ratio:
            org_code, org_name = "", ""
        elif roll < spec.blank_org_ratio + spec.blank_marker_org_ratio:
            org_code, org_name = BLANK_MARKER, BLANK_MARKER
        elif roll < 0.85:
            org_code, org_name = plan.branch_code, plan.branch_name
        else:
            branch = rng.choice(world.branches)
            org_code, org_name = branch.code, branch.name
        line = rng.choice(plan.product_lines)
        rows.append(
            {
                "月度": month,
                "计划代码": plan.code,
                "计划名称": plan.name,
                "计划类型": plan.plan_type,
                "客户名称": plan.client,
                "组合代码": portfolio.code,
                "组合名称": portfolio.name,
                "组合类型": portfolio.portfolio_type,
                "机构代码": org_code,
                "机构名称": org_name,
                "产品线代码": line,
                "业务类型": _BUSINESS_TYPES.get(line, world.product_lines[line].get("产品线名称", line)),
                "期末资产规模": f"{rng.lognormvariate(15.5, 1.6):.2f}",
                "主拓代码": plan.branch_code,
                "主拓机构": plan.branch_name,
            }
        )
    return rows


# --- writing the fact file ---------------------------------------------------------------------------------
def facts_file_name(spec: SampleSpec) -> str:
    """``annuity_performance_202411.csv``: the domain and the month, as monthly files are usually named."""
    return f"annuity_performance_{spec.month:%Y%m}.csv"


def write_facts(world: SampleWorld, path: Path, *, excel: bool = False) -> Path:
    """Write the month's facts as UTF-8 CSV (with BOM, so Excel opens the Chinese correctly) or ``.xlsx``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = world.fact_rows()
    tmp = path.with_name(path.name + ".tmp")
    if excel:
        import pandas as pd

        frame = pd.DataFrame(rows, columns=FACT_COLUMNS)
        frame["期末资产规模"] = frame["期末资产规模"].astype(float)
        frame.to_excel(tmp, index=False, sheet_name="规模明细", engine="openpyxl")
    else:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FACT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, path)  # readers never see a half-written file
    return path


# --- the legacy MySQL database ----------------------------------------------------------------------------
def mysql_connect(dsn: str):
    """A MySQLdb connection (autocommit off) from ``mysql://user:pw@host:port/db``."""
    import MySQLdb

    parts = urlsplit(dsn)
    return MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/"),
        charset="utf8mb4",
    )


def legacy_statements() -> list[str]:
    """The statements of ``sql/legacy/legacy.sql`` (comments dropped, split at ``;`` line ends)."""
    text = "\n".join(line for line in LEGACY_DDL.read_text(encoding="utf-8").splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in re.split(r";\s*$", text, flags=re.M) if statement.strip()]


def create_legacy_tables(conn) -> None:
    cur = conn.cursor()
    for statement in legacy_statements():
        cur.execute(statement)
    conn.commit()


def legacy_row_counts(conn) -> dict[str, int]:
    cur = conn.cursor()
    counts = {}
    for table in ("annuity_plan", "portfolio_plan", "organization"):
        cur.execute(f"SELECT COUNT(*) FROM `{table}`")  # noqa: S608 - fixed table names
        counts[table] = cur.fetchone()[0]
    return counts


_PLAN_INSERT = (
    "INSERT INTO `annuity_plan` (`plan_code`, `plan_name`, `plan_type`, `client_name`, `main_branch_code`,"
    " `main_branch_name`, `qualification`, `updated_at`) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_PORTFOLIO_INSERT = (
    "INSERT INTO `portfolio_plan` (`portfolio_code`, `portfolio_name`, `portfolio_type`, `plan_code`, `updated_at`)"
    " VALUES (%s, %s, %s, %s, %s)"
)
_BRANCH_INSERT = "INSERT INTO `organization` (`org_code`, `org_name`, `updated_at`) VALUES (%s, %s, %s)"


def _plan_row(plan: Plan, updated_at: dt.datetime | None = None) -> tuple:
    return (
        plan.code,
        plan.name,
        plan.plan_type,
        plan.client,
        plan.branch_code,
        plan.branch_name,
        plan.qualification,
        updated_at or plan.updated_at,
    )


def _portfolio_row(portfolio: Portfolio, updated_at: dt.datetime | None = None) -> tuple:
    return (
        portfolio.code,
        portfolio.name,
        portfolio.portfolio_type,
        portfolio.plan_code,
        updated_at or portfolio.updated_at,
    )


def load_legacy(conn, world: SampleWorld) -> dict[str, int]:
    """Create the legacy tables and fill them from ``world`` (replacing what was there); returns row counts.

    MySQLdb turns ``executemany`` of a plain INSERT into multi-row INSERT statements, so this is a handful of
    round trips, not one per row.
    """
    create_legacy_tables(conn)
    cur = conn.cursor()
    for table in ("annuity_plan", "portfolio_plan", "organization", "sample_data_mutations"):
        cur.execute(f"DELETE FROM `{table}`")  # noqa: S608 - fixed table names
    cur.executemany(_PLAN_INSERT, [_plan_row(p) for p in world.legacy_plans])
    cur.executemany(_PORTFOLIO_INSERT, [_portfolio_row(p) for p in world.legacy_portfolios])
    cur.executemany(_BRANCH_INSERT, [(b.code, b.name, b.updated_at) for b in world.branches])
    conn.commit()
    return legacy_row_counts(conn)


@dataclass
class MutationSummary:
    """What one mutation round changed in the legacy database (all with ``updated_at = NOW(6)``)."""

    round: int
    renamed_plans: list[str] = field(default_factory=list)
    moved_plans: list[str] = field(default_factory=list)  # main branch changed
    renamed_portfolios: list[str] = field(default_factory=list)
    renamed_branches: list[str] = field(default_factory=list)
    entered_plans: list[str] = field(default_factory=list)  # held-back plans now entered in the legacy system
    entered_portfolios: list[str] = field(default_factory=list)

    @property
    def changed_rows(self) -> dict[str, int]:
        return {
            "annuity_plan": len(set(self.renamed_plans) | set(self.moved_plans) | set(self.entered_plans)),
            "portfolio_plan": len(set(self.renamed_portfolios) | set(self.entered_portfolios)),
            "organization": len(self.renamed_branches),
        }


def applied_mutation_rounds(conn) -> int:
    cur = conn.cursor()
    cur.execute("SELECT COALESCE(MAX(`round`), 0) FROM `sample_data_mutations`")
    return int(cur.fetchone()[0])


def mutate(conn, world: SampleWorld) -> MutationSummary:
    """Apply the next mutation round to the legacy database (see the module docstring); returns what changed."""
    round_number = applied_mutation_rounds(conn) + 1
    rng = random.Random(world.spec.seed * 1000 + round_number)
    cur = conn.cursor()
    cur.execute("SELECT `plan_code` FROM `annuity_plan` ORDER BY `plan_code`")
    present_plans = [row[0] for row in cur.fetchall()]
    cur.execute("SELECT `portfolio_code` FROM `portfolio_plan` ORDER BY `portfolio_code`")
    present_portfolios = {row[0] for row in cur.fetchall()}
    summary = MutationSummary(round=round_number)

    summary.renamed_plans = rng.sample(present_plans, 2)
    cur.executemany(
        "UPDATE `annuity_plan` SET `plan_name` = CONCAT(`plan_name`, %s), `updated_at` = NOW(6) WHERE `plan_code` = %s",
        [(f"（第{round_number}次更名）", code) for code in summary.renamed_plans],
    )
    summary.moved_plans = rng.sample([c for c in present_plans if c not in summary.renamed_plans], 2)
    for code in summary.moved_plans:
        branch = rng.choice(world.branches[1:])
        cur.execute(
            "UPDATE `annuity_plan` SET `main_branch_code` = %s, `main_branch_name` = %s, `updated_at` = NOW(6)"
            " WHERE `plan_code` = %s",
            (branch.code, branch.name, code),
        )
    present_list = sorted(present_portfolios)
    summary.renamed_portfolios = rng.sample(present_list, 1)
    cur.executemany(
        "UPDATE `portfolio_plan` SET `portfolio_name` = CONCAT(`portfolio_name`, %s), `updated_at` = NOW(6)"
        " WHERE `portfolio_code` = %s",
        [(f"（第{round_number}次调整）", code) for code in summary.renamed_portfolios],
    )
    branch = rng.choice(world.branches[1:])
    summary.renamed_branches = [branch.code]
    cur.execute(
        "UPDATE `organization` SET `org_name` = %s, `updated_at` = NOW(6) WHERE `org_code` = %s",
        (f"{branch.name}（第{round_number}次更名）", branch.code),
    )

    # Enter two held-back plans with all their portfolios, plus one held-back portfolio of an existing plan:
    # the sync then promotes the rows the backfill derived for them.
    missing_plans = [p for p in world.held_back_plans if p.code not in set(present_plans)]
    entered = missing_plans[:2]
    entered_codes = {p.code for p in entered}
    now_rows = [p for p in world.portfolios if p.plan_code in entered_codes and p.code not in present_portfolios]
    lone = [
        p
        for p in world.portfolios
        if not p.in_legacy and p.plan_code not in entered_codes and p.code not in present_portfolios
        and p.plan_code in set(present_plans)
    ][:1]  # fmt: skip
    if entered:
        cur.execute("SELECT NOW(6)")
        now = cur.fetchone()[0]
        cur.executemany(_PLAN_INSERT, [_plan_row(p, now) for p in entered])
        cur.executemany(_PORTFOLIO_INSERT, [_portfolio_row(p, now) for p in [*now_rows, *lone]])
    summary.entered_plans = [p.code for p in entered]
    summary.entered_portfolios = [p.code for p in [*now_rows, *lone]] if entered else []
    cur.execute(
        "INSERT INTO `sample_data_mutations` (`round`, `summary`) VALUES (%s, %s)",
        (round_number, json.dumps(summary.__dict__, ensure_ascii=False)),
    )
    conn.commit()
    return summary


# --- command line ------------------------------------------------------------------------------------------
def _spec_from_args(args: argparse.Namespace) -> SampleSpec:
    base = SampleSpec.small() if args.small else SampleSpec()
    overrides = {"config_dir": Path(args.config_dir)} if args.config_dir else {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.month:
        overrides["month"] = dt.datetime.strptime(args.month, "%Y-%m").date()
    return SampleSpec(**{**base.__dict__, **overrides})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.sample_data", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["load", "mutate", "facts"])
    parser.add_argument("--mysql-dsn", default=os.environ.get("REFDATA_MYSQL_DSN"), help="legacy database DSN")
    parser.add_argument(
        "--out", type=Path, help="fact file to write (facts; default $REFDATA_FACT_DIR/<domain>_<YYYYMM>.csv)"
    )
    parser.add_argument("--if-empty", action="store_true", help="load: do nothing when annuity_plan has rows")
    parser.add_argument("--excel", action="store_true", help="also write an .xlsx next to the CSV")
    parser.add_argument("--small", action="store_true", help="the test-sized world (120 plans, 3,000 facts)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--month", help="fact month YYYY-MM (default: the previous month, Asia/Shanghai)")
    parser.add_argument("--config-dir", default=os.environ.get("REFDATA_CONFIG_DIR"))
    args = parser.parse_args(argv)
    world = generate(_spec_from_args(args))

    if args.action == "facts":
        if not args.out:
            if not os.environ.get("REFDATA_FACT_DIR"):
                parser.error("facts needs --out or REFDATA_FACT_DIR")
            args.out = Path(os.environ["REFDATA_FACT_DIR"]) / facts_file_name(world.spec)
        written = [write_facts(world, args.out, excel=args.out.suffix == ".xlsx")]
        if args.excel and args.out.suffix != ".xlsx":
            written.append(write_facts(world, args.out.with_suffix(".xlsx"), excel=True))
        for path in written:
            print(f"wrote {len(world.fact_rows())} fact rows to {path}")
        return 0
    if not args.mysql_dsn:
        parser.error(f"{args.action} needs --mysql-dsn or REFDATA_MYSQL_DSN")
    conn = mysql_connect(args.mysql_dsn)
    try:
        if args.action == "load":
            create_legacy_tables(conn)
            if args.if_empty and legacy_row_counts(conn)["annuity_plan"]:
                print("the legacy database already holds data: left as it is (--if-empty)")
                return 0
            counts = load_legacy(conn, world)
            print("loaded the legacy database: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
        else:
            summary = mutate(conn, world)
            print(f"mutation round {summary.round}: changed rows {summary.changed_rows}")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
