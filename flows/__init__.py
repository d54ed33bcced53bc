"""Prefect flows (market lifecycle, round, settlement, demo simulation) and the CLI."""
