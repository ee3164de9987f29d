"""JSON Schemas of ``foreign_keys.yml`` and ``reference_sync.yml``, generated from the config models.

Regenerate the committed files after changing a model (run from the repository root)::

    python -m airflow_provider_refdata.config_schema            # writes schemas/*.schema.json
    python -m airflow_provider_refdata.config_schema --check    # exit 1 when they are out of date

Editors using yaml-language-server pick them up from a first-line comment such as
``# yaml-language-server: $schema=../schemas/foreign_keys.schema.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from airflow_provider_refdata.config import (
    ConfigFileSourceConfig,
    ForeignKeysFileConfig,
    LegacyMySqlSourceConfig,
    PostgresSourceConfig,
    ReferenceSyncConfig,
    SqlSourceConfig,
    SyncTableConfig,
)

SOURCE_MODELS: dict[str, type[BaseModel]] = {
    "legacy_mysql": LegacyMySqlSourceConfig,
    "postgres": PostgresSourceConfig,
    "sql": SqlSourceConfig,
    "config_file": ConfigFileSourceConfig,
}

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: file name under ``schemas/`` → (model, title)
SCHEMA_FILES: dict[str, tuple[type[BaseModel], str]] = {
    "foreign_keys.schema.json": (ForeignKeysFileConfig, "airflow-provider-refdata foreign_keys.yml"),
    "reference_sync.schema.json": (ReferenceSyncConfig, "airflow-provider-refdata reference_sync.yml"),
}


def build_schemas() -> dict[str, dict[str, Any]]:
    """``{file name: JSON Schema}`` for every configuration file."""
    schemas = {}
    for file_name, (model, title) in SCHEMA_FILES.items():
        schema = model.model_json_schema(mode="validation")
        sync_table = schema.get("$defs", {}).get(SyncTableConfig.__name__)
        if sync_table is not None:
            # source_config's shape depends on source_type: tell editors which one applies.
            sync_table["allOf"] = [
                {
                    "if": {"properties": {"source_type": {"const": source_type}}, "required": ["source_type"]},
                    "then": {"properties": {"source_config": {"$ref": f"#/$defs/{source_model.__name__}"}}},
                }
                for source_type, source_model in SOURCE_MODELS.items()
            ]
        schemas[file_name] = {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": title}
    return schemas


def render(schema: dict[str, Any]) -> str:
    """The exact text committed for ``schema`` (stable formatting, UTF-8, trailing newline)."""
    return json.dumps(schema, ensure_ascii=False, indent=2) + "\n"


def write_schemas(output_dir: str | Path) -> list[Path]:
    """Write every schema into ``output_dir``; returns the paths written."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, schema in build_schemas().items():
        path = out / file_name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def stale_schemas(output_dir: str | Path) -> list[Path]:
    """Schema files in ``output_dir`` that are missing or differ from the models."""
    out = Path(output_dir)
    stale = []
    for file_name, schema in build_schemas().items():
        path = out / file_name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(schema):
            stale.append(path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="schemas", help="folder of the schema files (default: schemas)")
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_schemas(args.output_dir)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(args.output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
