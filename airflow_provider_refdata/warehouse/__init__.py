"""Everything that speaks PostgreSQL: connections, quoting, staging COPY, tracking columns, state tables.

Plain Python (psycopg 3); nothing here imports Airflow.
"""
