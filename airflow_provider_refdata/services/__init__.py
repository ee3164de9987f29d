"""The services: authoritative sync, backfill of missing keys, and the hybrid coverage/backfill run.

Plain Python: nothing in this package imports Airflow.
"""
