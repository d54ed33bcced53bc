"""The in-process EVM: eth-tester over py-evm, with transactions found by py-evm's hash index.

eth-tester 0.14's py-evm backend finds a transaction by walking the chain back from its head
(its own comment: "the chain should be able to look these up directly by hash"), and its
`get_logs` reads one receipt per transaction in the block range that way, so reading a market's
events costs time quadratic in the chain's length: in the demo (8 trainers, 5 rounds) event reads
took most of the run. py-evm's chain database already indexes canonical transactions by hash;
this backend asks it first and falls back to eth-tester's own search for anything the index does
not hold (the pending block).
"""

from __future__ import annotations

from eth.exceptions import TransactionNotFound
from eth_tester import PyEVMBackend
from eth_tester.backends.pyevm.serializers import serialize_transaction, serialize_transaction_receipt


class IndexedPyEVMBackend(PyEVMBackend):
    def _indexed(self, transaction_hash: bytes):
        """(block, transaction, index) from py-evm's index, or None if it has no such entry."""
        try:
            number, index = self.chain.chaindb.get_transaction_index(transaction_hash)
        except TransactionNotFound:
            return None
        if number >= self.chain.get_block().number:  # above the head: a snapshot revert undid it
            return None
        block = self.chain.get_canonical_block_by_number(number)
        if index >= len(block.transactions) or block.transactions[index].hash != transaction_hash:
            return None  # replaced after a snapshot revert: let eth-tester search
        return block, block.transactions[index], index

    def get_transaction_by_hash(self, transaction_hash):
        found = self._indexed(transaction_hash)
        if found is None:
            return super().get_transaction_by_hash(transaction_hash)
        block, transaction, index = found
        return serialize_transaction(block, transaction, index, False)

    def get_transaction_receipt(self, transaction_hash):
        found = self._indexed(transaction_hash)
        if found is None:
            return super().get_transaction_receipt(transaction_hash)
        block, transaction, index = found
        receipts = block.get_receipts(self.chain.chaindb)
        return serialize_transaction_receipt(block, receipts, transaction, index, False, self.chain.get_vm())
