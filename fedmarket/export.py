"""`fedmarket owner export`: the market's final model, as the chain names it, written as ONNX.

The final round's aggregate is read by the CID its `RoundFinalized` event carries (the store
checks the bytes against the CID) and must open to the commitment the contract holds (Poseidon
of the grid values in a proven market, else sha2-256 of the bytes), so the file is the model
the trainers were paid for. onnxruntime then predicts the owner's validation rows as torch does."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedmarket.chain import MarketClient
from fedmarket.commitments import commit_model, round_circuit
from fedmarket.context import current_platform
from fedmarket.errors import CommitmentMismatchError, ProtocolError
from fedmarket.market_context import market_context
from fedmarket.ml.export import check_onnx, to_onnx
from fedmarket.ml.updates import decode_update
from fedmarket.store import ContentStore


@dataclass(frozen=True)
class Exported:
    market: str
    round: int
    aggregate_cid: str
    path: str
    sha256: str
    rows_checked: int
    accuracy: float  # of the ONNX model on the owner's validation rows


def export_final_model(market: MarketClient, store: ContentStore, path: Path) -> Exported:
    """Write the final aggregate of a market whose rounds are all finalized as ONNX at `path`."""
    last = market.round_count()
    if market.current_round() < last or not market.round_state(last).finalized:
        raise ProtocolError(f"market {market.address} has not finalized its last round ({last}) yet")
    cid, commitment = market.aggregate_of(last)
    context = market_context(market, store)
    plaintext = store.get(cid)
    vector = decode_update(plaintext, context.spec.model)
    circuit = round_circuit(market, context.spec.model, current_platform().settings)
    if commit_model(vector, plaintext, circuit=circuit, global_model=True) != commitment:
        raise CommitmentMismatchError(f"round {last}'s aggregate {cid} does not open to the chain's commitment")
    onnx_bytes = to_onnx(vector, context.spec.model)
    data = context.validation
    predicted = check_onnx(onnx_bytes, vector, context.spec.model, data.features)
    path = Path(path)
    path.write_bytes(onnx_bytes)
    return Exported(
        market.address,
        last,
        cid,
        str(path),
        hashlib.sha256(onnx_bytes).hexdigest(),
        len(data),
        float(np.mean(predicted == data.labels)),
    )
