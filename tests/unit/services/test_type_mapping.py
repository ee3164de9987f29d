"""The MySQL → PostgreSQL type table of ``create_table: true`` (services/type_mapping.py), fixture-driven.

Each fixture row is one column as ``information_schema.COLUMNS`` reports it (the MariaDB 10.11 rows were
copied from the test server; MySQL 8 omits integer display widths and has a native ``json``), and the
PostgreSQL type the created column gets.  The integration test ``test_sync_create_table.py`` loads real
values of these types through the created tables.
"""

from __future__ import annotations

import pytest

from airflow_provider_refdata.services.type_mapping import MySqlType, UnmappableTypeError, mysql_to_postgres

# DATA_TYPE     COLUMN_TYPE                  CHAR_LEN  NUM_PREC NUM_SCALE DT_PREC   → PostgreSQL
MAPPED = """
varchar        varchar(16)                  16        -        -         -         varchar(16)
varchar        varchar(65535)               65535     -        -         -         varchar(65535)
char           char(5)                      5         -        -         -         varchar(5)
char           char(0)                      0         -        -         -         varchar(1)
tinytext       tinytext                     255       -        -         -         text
text           text                         65535     -        -         -         text
mediumtext     mediumtext                   16777215  -        -         -         text
longtext       longtext                     4294967295 -       -         -         text
enum           enum('x','yy')               2         -        -         -         text
set            set('a','b')                 3         -        -         -         text
json           json                         -         -        -         -         jsonb
tinyint        tinyint(1)                   -         3        0         -         smallint
tinyint        tinyint(4)                   -         3        0         -         smallint
tinyint        tinyint(3)_unsigned          -         3        0         -         smallint
smallint       smallint(6)                  -         5        0         -         smallint
smallint       smallint(5)_unsigned         -         5        0         -         integer
mediumint      mediumint(9)                 -         7        0         -         integer
mediumint      mediumint(8)_unsigned        -         8        0         -         integer
int            int(11)                      -         10       0         -         integer
int            int(10)_unsigned             -         10       0         -         bigint
int            int_unsigned                 -         10       0         -         bigint
int            int(5)_unsigned_zerofill     -         10       0         -         bigint
bigint         bigint(20)                   -         19       0         -         bigint
bigint         bigint(20)_unsigned          -         20       0         -         numeric(20,0)
decimal        decimal(18,2)                -         18       2         -         numeric(18,2)
decimal        decimal(10,0)_unsigned       -         10       0         -         numeric(10,0)
decimal        decimal(65,30)               -         65       30        -         numeric(65,30)
float          float                        -         12       -         -         real
float          float(7,3)                   -         7        3         -         real
double         double                       -         22       -         -         double_precision
date           date                         -         -        -         -         date
datetime       datetime                     -         -        -         0         timestamp(0)
datetime       datetime(3)                  -         -        -         3         timestamp(3)
timestamp      timestamp                    -         -        -         0         timestamptz(0)
timestamp      timestamp(6)                 -         -        -         6         timestamptz(6)
time           time                         -         -        -         0         interval(0)
time           time(2)                      -         -        -         2         interval(2)
year           year(4)                      -         -        -         -         smallint
binary         binary(4)                    4         -        -         -         bytea
varbinary      varbinary(10)                10        -        -         -         bytea
tinyblob       tinyblob                     255       -        -         -         bytea
blob           blob                         65535     -        -         -         bytea
longblob       longblob                     4294967295 -       -         -         bytea
bit            bit(1)                       -         1        -         -         boolean
bit            bit(10)                      -         10       -         -         bigint
bit            bit(64)                      -         64       -         -         numeric(20,0)
uuid           uuid                         -         -        -         -         uuid
inet4          inet4                        -         -        -         -         inet
inet6          inet6                        -         -        -         -         inet
"""

# DATA_TYPE     COLUMN_TYPE                  → the refusal names
REFUSED = """
geometry       geometry                     spatial
point          point                        spatial
polygon        polygon                      spatial
vector         vector(3)                    'vector'
"""


def _cell(text: str) -> int | None:
    return None if text == "-" else int(text)


def _mapped_cases() -> list:
    cases = []
    for line in MAPPED.strip().splitlines():
        data_type, column_type, length, precision, scale, fsp, expected = line.split()
        column = MySqlType(
            data_type=data_type,
            column_type=column_type.replace("_", " "),
            character_maximum_length=_cell(length),
            numeric_precision=_cell(precision),
            numeric_scale=_cell(scale),
            datetime_precision=_cell(fsp),
        )
        cases.append(pytest.param(column, expected.replace("_", " "), id=column.column_type))
    return cases


@pytest.mark.parametrize(("column", "expected"), _mapped_cases())
def test_mapped(column: MySqlType, expected: str) -> None:
    assert mysql_to_postgres(column) == expected


@pytest.mark.parametrize(
    ("data_type", "column_type", "named"),
    [pytest.param(*line.split(), id=line.split()[1]) for line in REFUSED.strip().splitlines()],
)
def test_refused(data_type: str, column_type: str, named: str) -> None:
    with pytest.raises(UnmappableTypeError, match=named) as info:
        mysql_to_postgres(MySqlType(data_type=data_type, column_type=column_type))
    assert column_type in str(info.value)


def test_upper_case_data_type_and_unsigned_flag() -> None:
    assert mysql_to_postgres(MySqlType(data_type="INT", column_type="INT(10) UNSIGNED")) == "bigint"
    assert MySqlType(data_type="int", column_type="int(10) unsigned").unsigned
    assert not MySqlType(data_type="int", column_type="int(11)").unsigned


def test_length_missing_is_refused_not_guessed() -> None:
    with pytest.raises(UnmappableTypeError, match="CHARACTER_MAXIMUM_LENGTH"):
        mysql_to_postgres(MySqlType(data_type="varchar", column_type="varchar"))
    with pytest.raises(UnmappableTypeError, match="NUMERIC_PRECISION"):
        mysql_to_postgres(MySqlType(data_type="decimal", column_type="decimal"))
