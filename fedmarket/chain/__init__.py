"""Chain adapter (in-process EVM or JSON-RPC node) and contract bindings."""

from fedmarket.chain.adapter import Chain, TxResult, account_from_key
from fedmarket.chain.board import BoardClient, RoundReveals
from fedmarket.chain.ledger import MarketLedger
from fedmarket.chain.market import (
    FactoryClient,
    MarketClient,
    RoundState,
    VerifierInfo,
    contribution_step,
    seed_commitment,
)

__all__ = [
    "BoardClient",
    "Chain",
    "FactoryClient",
    "MarketClient",
    "MarketLedger",
    "RoundReveals",
    "RoundState",
    "TxResult",
    "VerifierInfo",
    "account_from_key",
    "contribution_step",
    "seed_commitment",
]
