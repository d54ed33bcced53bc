"""The in-process EVM's indexed transaction lookup (fedmarket/chain/inprocess.py) answers exactly
what eth-tester's own block-by-block search answers, and leaves what the index lacks to it."""

from __future__ import annotations

import pytest
from eth_tester import PyEVMBackend
from eth_tester.exceptions import TransactionNotFound

from fedmarket.chain.inprocess import IndexedPyEVMBackend
from fedmarket.errors import ChainError
from tests.helpers import create_market


def test_receipts_and_transactions_equal_eth_testers_search(platform):
    market, *_ = create_market(platform, trainers=3)
    backend = platform.chain._tester.backend
    assert isinstance(backend, IndexedPyEVMBackend)
    head = platform.chain._w3.eth.block_number
    hashes = [tx for n in range(1, head + 1) for tx in platform.chain._w3.eth.get_block(n)["transactions"]]
    assert len(hashes) > 10  # deployments, funding, registrations, reveals
    for tx in hashes:
        assert backend.get_transaction_receipt(bytes(tx)) == PyEVMBackend.get_transaction_receipt(backend, bytes(tx))
        assert backend.get_transaction_by_hash(bytes(tx)) == PyEVMBackend.get_transaction_by_hash(backend, bytes(tx))
    # what the events of the market read back through the index
    assert len(market.contract.events.TrainerRegistered().get_logs(from_block=0)) == 3


def test_a_transaction_undone_by_a_snapshot_revert_is_not_found(platform):
    tester, eth = platform.chain._tester, platform.chain._w3.eth

    def pay(wei: int) -> bytes:
        return bytes(eth.send_transaction({"from": eth.accounts[0], "to": eth.accounts[1], "value": wei}))

    snapshot = tester.take_snapshot()
    undone = pay(1)
    assert tester.backend.get_transaction_receipt(undone)["status"] == 1
    tester.revert_to_snapshot(snapshot)
    with pytest.raises(TransactionNotFound):  # its block is above the head now
        tester.backend.get_transaction_receipt(undone)
    replacing = pay(2)  # mined at the undone one's height
    assert (
        tester.backend.get_transaction_receipt(replacing)["block_number"]
        == tester.get_block_by_number("latest")["number"]
    )
    with pytest.raises(TransactionNotFound):  # the index still names that height: the hash check catches it
        tester.backend.get_transaction_receipt(undone)
    with pytest.raises(TransactionNotFound):
        tester.backend.get_transaction_by_hash(b"\x01" * 32)


def test_funding_past_the_funders_balance_is_one_chain_error(platform):
    """A dev chain's funder short of ether (`fedmarket bench` on a node started with little) is a
    ChainError naming the funding, not web3's own error."""
    eth = platform.chain._w3.eth
    more = eth.get_balance(eth.accounts[0]) + 1
    with pytest.raises(ChainError, match=f"funding {eth.accounts[1]} with {more} wei failed"):
        platform.chain.fund(eth.accounts[1], more)
