"""Prefect tasks only: one module per pipeline step, over `fedmarket_schemas`. The algorithms they
run live below them, in fedmarket/algorithms."""
