"""Enrolment of every trainer by one process: for simulations, tests and benchmarks that play all
the trainers of a market themselves."""

from __future__ import annotations

from fedmarket.chain import MarketClient
from fedmarket.identity import Party


def enrol(market: MarketClient, trainers: list[Party], summary_cid: str) -> None:
    """Every trainer registers (committing to its split seed), then every trainer reveals: the
    commit-reveal order, so no seed is known before all are committed."""
    for t in trainers:
        market.register(t.account, t.public_box_key, t.split_seed(market.address), summary_cid)
    for t in trainers:
        market.reveal(t.account, t.split_seed(market.address))
