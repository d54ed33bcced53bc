"""`fedmarket bench secagg`: what secure aggregation costs each party, per round and market size.
L trainers deal their keys for the market's rounds, mask a d-parameter model, a quarter of them
(at least one) drop after masking, a majority of the survivors reveal their shares, and the
aggregator rebuilds the survivors' sum. Seconds are this machine's, one process; bytes are what
each trainer publishes by CID (the key bundle's JSON once per market, the masked model and the
reveal's JSON each round)."""

from __future__ import annotations

import os
import time

import numpy as np
from pydantic import BaseModel

from fedmarket.crypto import generate_private_key, public_key_bytes
from fedmarket.secagg import (
    MaskContext,
    Trainer,
    decode_sum,
    make_bundle,
    make_reveal,
    mask_model,
    open_bundle_shares,
    recover_sum,
    round_secrets,
)

CHAIN, MARKET = 31337, "0x" + "5e" * 20


class SecaggRow(BaseModel):
    trainers: int
    params: int
    rounds: int
    dropped: int
    bundle_s: float  # per trainer, once per market
    bundle_bytes: int
    open_shares_s: float  # per trainer, once per market: opening every dealer's sealed shares
    mask_s: float  # per trainer per round
    masked_bytes: int
    reveal_s: float  # per trainer per round
    reveal_bytes: int
    recover_s: float  # the aggregator, per round
    max_abs_error: float  # recovered mean against the survivors' plain mean


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def _open_all(bundles, boxes, members) -> dict[int, dict[int, list[tuple[bytes, bytes]]]]:
    return {
        h: {d: open_bundle_shares(b, holder=h, box_key=box, dealer=members[d]) for d, b in bundles.items()}
        for h, box in enumerate(boxes)
    }


def run(trainers: list[int], params: list[int], rounds: int = 5, progress=None) -> list[SecaggRow]:
    rows = []
    for n in trainers:
        boxes = [generate_private_key() for _ in range(n)]
        secrets = [os.urandom(32) for _ in range(n)]
        members = [Trainer(i, f"0x{i + 1:040x}", public_key_bytes(k)) for i, k in enumerate(boxes)]
        bundles, bundle_s = {}, 0.0
        for m in members:
            bundles[m.index], seconds = _timed(
                make_bundle,
                secret=secrets[m.index],
                dealer=m,
                box_key=boxes[m.index],
                members=members,
                rounds=rounds,
                chain_id=CHAIN,
                market=MARKET,
            )
            bundle_s += seconds
        held, open_s = _timed(_open_all, bundles, boxes, members)
        ctx = MaskContext(CHAIN, MARKET, 1)
        peers = {i: bytes.fromhex(b.rounds[0].mask_public_key) for i, b in bundles.items()}
        dropped = set(range(n - max(1, n // 4), n))
        survivors = set(range(n)) - dropped
        for d in params:
            models = np.random.default_rng(d).normal(0, 0.3, size=(n, d)).astype(np.float32)
            masked, mask_s = {}, 0.0
            for u in range(n):
                secrets_u = round_secrets(secrets[u], ctx)
                y, seconds = _timed(mask_model, models[u], secrets=secrets_u, me=u, peers=peers, context=ctx)
                mask_s += seconds
                if u in survivors:
                    masked[u] = y
            responders = sorted(survivors)[: bundles[0].threshold]
            reveals, reveal_s = [], 0.0
            for h in responders:
                first_round = {dealer: shares[0] for dealer, shares in held[h].items()}
                reveal, seconds = _timed(
                    make_reveal, held=first_round, holder=h, survivors=survivors, dropped=dropped, context=ctx
                )
                reveals.append(reveal)
                reveal_s += seconds
            recovery, recover_s = _timed(
                recover_sum, masked=masked, bundles=bundles, reveals=reveals, participants=set(range(n)), context=ctx
            )
            mean = decode_sum(recovery.total) / len(survivors)
            plain = models[sorted(survivors)].astype(np.float64).mean(axis=0)
            rows.append(
                SecaggRow(
                    trainers=n,
                    params=d,
                    rounds=rounds,
                    dropped=len(dropped),
                    bundle_s=round(bundle_s / n, 4),
                    bundle_bytes=int(np.mean([len(b.model_dump_json()) for b in bundles.values()])),
                    open_shares_s=round(open_s / n, 4),
                    mask_s=round(mask_s / n, 4),
                    masked_bytes=8 * d,
                    reveal_s=round(reveal_s / len(responders), 6),
                    reveal_bytes=int(np.mean([len(r.model_dump_json()) for r in reveals])),
                    recover_s=round(recover_s, 4),
                    max_abs_error=float(np.max(np.abs(mean - plain))),
                )
            )
            if progress:
                progress(rows[-1])
    return rows
