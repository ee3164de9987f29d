"""Models of the ``health:`` section of ``reference_sync.yml``: alert rules on reference-data health.

Three rules, each with a ``warn`` and a ``fail`` level (either may be left out), set globally and overridden
per table (keyed by the schema-qualified table, ``business.年金计划``)::

    health:
      auto_derived_ratio: {warn: 0.10, fail: 0.30}   # auto-derived rows / all rows
      needs_review_count: {warn: 100, fail: 1000}    # rows with _needs_review
      placeholder_age_days: {warn: 7, fail: 30}      # age of the oldest open placeholder, in days
      on_error: fail                                 # level of the alert of a table whose check failed
      tables:
        business.年金计划:
          auto_derived_ratio: {fail: 0.50}           # warn stays 0.10 (inherited)
          placeholder_age_days: {fail: null}         # null switches a level off for this table

A per-table rule replaces the levels it names and inherits the others from the global rule; a level given
as ``null`` is switched off for that table.  ``warn`` must not be above ``fail``, also after merging.
A value strictly above a threshold alerts (as the hybrid service's ``auto_derived_threshold`` does).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from airflow_provider_refdata.config._common import _ConfigModel, _FieldError

RuleName = Literal["auto_derived_ratio", "needs_review_count", "placeholder_age_days"]
RULE_NAMES: tuple[RuleName, ...] = ("auto_derived_ratio", "needs_review_count", "placeholder_age_days")


def _plain_number(value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _whole_number(value: Any) -> Any:
    _plain_number(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"must be a whole number of rows, got {value!r}")
        return int(value)
    return value


Ratio = Annotated[float, Field(ge=0, le=1), BeforeValidator(_plain_number)]
Count = Annotated[int, Field(ge=0), BeforeValidator(_whole_number)]
Days = Annotated[float, Field(ge=0), BeforeValidator(_plain_number)]


class _Levels(_ConfigModel):
    """``warn`` and ``fail`` thresholds of one rule; at least one of them, ``warn`` ≤ ``fail``."""

    warn: Any = None
    fail: Any = None

    @model_validator(mode="after")
    def _warn_not_above_fail(self) -> _Levels:
        if self.warn is not None and self.fail is not None and self.warn > self.fail:
            raise _FieldError(
                f"warn ({self.warn!r}) is above fail ({self.fail!r}); the warn level must be reached first",
                loc=("warn",),
                value=self.warn,
            )
        return self

    def merged(self, override: _Levels | None) -> tuple[Any, Any]:
        """(warn, fail) after applying a per-table ``override`` (its explicitly set levels win)."""
        warn, fail = self.warn, self.fail
        if override is not None:
            if "warn" in override.model_fields_set:
                warn = override.warn
            if "fail" in override.model_fields_set:
                fail = override.fail
        return warn, fail


class RatioLevels(_Levels):
    """Thresholds of ``auto_derived_ratio`` (0–1): auto-derived rows / all rows of the table."""

    warn: Ratio | None = Field(None, description="Warn when the ratio is above this (0-1).")
    fail: Ratio | None = Field(None, description="Fail when the ratio is above this (0-1).")


class CountLevels(_Levels):
    """Thresholds of ``needs_review_count``: rows with ``_needs_review``."""

    warn: Count | None = Field(None, description="Warn when more rows than this need review.")
    fail: Count | None = Field(None, description="Fail when more rows than this need review.")


class DaysLevels(_Levels):
    """Thresholds of ``placeholder_age_days``: the age of the oldest open placeholder, in days."""

    warn: Days | None = Field(None, description="Warn when an open placeholder is older than this many days.")
    fail: Days | None = Field(None, description="Fail when an open placeholder is older than this many days.")


class HealthTableRules(_ConfigModel):
    """Per-table overrides of the global rules (only the levels given replace the global ones)."""

    auto_derived_ratio: RatioLevels | None = Field(None, description="Overrides of auto_derived_ratio.")
    needs_review_count: CountLevels | None = Field(None, description="Overrides of needs_review_count.")
    placeholder_age_days: DaysLevels | None = Field(None, description="Overrides of placeholder_age_days.")


class HealthConfig(_ConfigModel):
    """The ``health:`` section: alert rules on the health of the reference tables."""

    auto_derived_ratio: RatioLevels = Field(
        default_factory=RatioLevels, description="Auto-derived rows / all rows (0-1), above which to alert."
    )
    needs_review_count: CountLevels = Field(
        default_factory=CountLevels, description="Rows with _needs_review, above which to alert."
    )
    placeholder_age_days: DaysLevels = Field(
        default_factory=DaysLevels, description="Age in days of the oldest open placeholder, above which to alert."
    )
    on_error: Literal["warn", "fail"] = Field(
        "fail", description="Level of the alert raised for a table whose health check failed."
    )
    tables: dict[str, HealthTableRules] = Field(
        default_factory=dict, description="Per-table overrides, keyed by schema-qualified table (schema.table)."
    )

    @model_validator(mode="after")
    def _check_tables(self) -> HealthConfig:
        for name, rules in self.tables.items():
            schema, dot, table = name.partition(".")
            if not dot or not schema.strip() or not table.strip():
                raise _FieldError(
                    f"{name!r} is not a schema-qualified table (schema.table)", loc=("tables", name), value=name
                )
            for rule in RULE_NAMES:
                override = getattr(rules, rule)
                warn, fail = getattr(self, rule).merged(override)
                if warn is not None and fail is not None and warn > fail:
                    level = "warn" if override is not None and "warn" in override.model_fields_set else "fail"
                    raise _FieldError(
                        f"after applying this table's override, warn ({warn!r}) is above fail ({fail!r}) "
                        f"(the global {rule} gives the other level)",
                        loc=("tables", name, rule, level),
                        value=warn if level == "warn" else fail,
                    )
        return self

    def levels(self, table: str, rule: RuleName) -> tuple[float | None, float | None]:
        """(warn, fail) thresholds of ``rule`` for ``table`` (schema-qualified), overrides applied."""
        override = self.tables.get(table)
        return getattr(self, rule).merged(getattr(override, rule) if override is not None else None)
