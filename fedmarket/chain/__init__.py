"""Chain adapter (in-process EVM or JSON-RPC node) and contract bindings."""

from fedmarket.chain.adapter import Chain, TxResult, account_from_key
from fedmarket.chain.market import FactoryClient, MarketClient, RoundState

__all__ = ["Chain", "FactoryClient", "MarketClient", "RoundState", "TxResult", "account_from_key"]
