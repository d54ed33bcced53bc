"""Prefect flows only: the market lifecycle, a round, the settlement, the owner's market creation,
a trainer, the chain listener, the audit and the demo."""
