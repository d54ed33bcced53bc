"""The norm-bound proof of a secure-aggregation market (fedmarket/zk/norm_proof.py): it shows the
exact norm of the update behind a commitment, holds for one trainer, round and market, and a
market excludes a submission without one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedmarket.audit import audit_market
from fedmarket.context import use_platform
from fedmarket.errors import ZKError
from fedmarket.fixed_point import STEP, on_grid, quantize
from fedmarket.ml.data import Dataset
from fedmarket.settings import Settings
from fedmarket.zk import clip_to_bound, norm_domain, poseidon_commitment, prove_norm, sum_is_proven, verify_norm
from fedmarket_schemas.market import DataSchema

D = 8
DOMAIN = norm_domain(31337, "0x" + "ab" * 20, 1, "0x" + "cd" * 20)


@pytest.fixture(scope="module")
def proved(norm_build):
    rng = np.random.default_rng(3)
    start = quantize(rng.normal(0, 0.5, D))
    model = quantize(start + rng.normal(0, 0.4, D))
    return start, model, prove_norm(norm_build, model, start, DOMAIN)


def test_the_proof_shows_the_exact_norm_of_the_committed_update(norm_build, proved):
    start, model, proof = proved
    assert sum_is_proven(norm_build, [proof.proof_json], np.round(model * 256))  # it commits to the model
    assert not sum_is_proven(norm_build, [proof.proof_json], np.round(model * 256) + 1)
    assert proof.norm == pytest.approx(float(np.linalg.norm(model - start)), abs=1e-12)
    shown = verify_norm(
        norm_build, proof.proof_json, commitment=proof.commitment, start=start, domain=DOMAIN, bound=5.0
    )
    assert shown == proof.norm


@pytest.mark.parametrize(
    "change, error",
    [
        ({"bound": 0.1}, "exceeds the task's bound 0.1"),
        (
            {"domain": norm_domain(31337, "0x" + "ab" * 20, 1, "0x" + "ce" * 20)},
            "another chain, market, round or trainer",
        ),
        (
            {"domain": norm_domain(31337, "0x" + "ab" * 20, 2, "0x" + "cd" * 20)},
            "another chain, market, round or trainer",
        ),
        ({"commitment": "0x" + "00" * 31 + "01"}, "is for commitment"),
        ({"start": np.zeros(D)}, "another global model"),
    ],
)
def test_a_proof_holds_for_its_own_commitment_round_trainer_and_bound_only(norm_build, proved, change, error):
    start, _, proof = proved
    args = dict(commitment=proof.commitment, start=start, domain=DOMAIN, bound=5.0) | change
    with pytest.raises(ZKError, match=error):
        verify_norm(norm_build, proof.proof_json, **args)


def test_a_proof_whose_claimed_norm_was_altered_does_not_verify(norm_build, proved):
    start, _, proof = proved
    data = json.loads(proof.proof_json)
    data["instances"][0][0] = "0x" + (1).to_bytes(32, "little").hex()  # a norm^2 of 2^-16
    with pytest.raises(ZKError, match="does not verify"):
        verify_norm(norm_build, json.dumps(data), commitment=proof.commitment, start=start, domain=DOMAIN, bound=5.0)
    with pytest.raises(ZKError, match="not an EZKL proof file"):
        verify_norm(norm_build, "{}", commitment=proof.commitment, start=start, domain=DOMAIN, bound=5.0)


def test_one_trainers_field_masked_model_is_checked_against_its_proof_and_its_masks_commitments(norm_build, proved):
    """The equation that names a trainer whose masked model is not its proven one: in BN254's
    field, C(y) - C(0) = (C(W) - C(0)) + sum s (C(r) - C(0)) over its masks r with signs s, on
    commitments alone. In Z_2^64 the masks wrap around 2^64, and the same check fails."""
    from fedmarket.secagg import BN254, Z64
    from fedmarket.zk.ezkl.polycommit import combines_to, commit_elements, commit_values

    start, model, proof = proved
    keys, signs = [bytes([k]) * 32 for k in (1, 2, 3)], (1, -1, 1)
    zero = commit_values(norm_build, np.zeros(D))

    def masked(ring, values, chosen=keys, signs=signs):
        y = ring.encode(values)
        for key, sign in zip(chosen, signs, strict=True):
            ring.apply(y, key, sign)
        return y

    masks = [(s, commit_elements(norm_build, BN254.stream(k, D))) for k, s in zip(keys, signs, strict=True)]
    y = commit_elements(norm_build, masked(BN254, model))
    assert combines_to(y, [(1, proof.point), *masks], zero)
    # another model under the same masks, or a mask other than the one its commitment is to
    assert not combines_to(commit_elements(norm_build, masked(BN254, model + STEP)), [(1, proof.point), *masks], zero)
    other = masked(BN254, model, [keys[0], keys[1], bytes([9]) * 32])
    assert not combines_to(commit_elements(norm_build, other), [(1, proof.point), *masks], zero)
    # three positive masks in Z_2^64 wrap (their sum passes 2^64), and the equation no longer holds
    streams = [Z64.stream(k, D) for k in keys]
    assert max(sum(int(r[i]) for r in streams) for i in range(D)) >= 2**64
    wrapped = [(1, commit_elements(norm_build, r)) for r in streams]
    z = commit_elements(norm_build, masked(Z64, model, signs=(1, 1, 1)))
    assert not combines_to(z, [(1, proof.point), *wrapped], zero)


def test_a_survivor_whose_masked_model_is_not_its_proven_one_is_named_and_no_honest_one_is(norm_build, proved):
    """Five trainers mask in BN254's field with commitments to their pair streams; trainer 4 drops
    after masking. Trainer 2 masks another model than it proves: named. Trainer 1 stores a false
    commitment to its pair with trainer 3: that pair is disputed and neither is checked (a point
    reveal settles it). No honest survivor is named."""
    from fedmarket.chain import account_from_key
    from fedmarket.crypto import private_key_from_bytes
    from fedmarket.exclusions import masked_cheaters
    from fedmarket.identity import Party
    from fedmarket.secagg import BN254, recover_sum
    from fedmarket.secagg import onchain as secagg
    from fedmarket.zk import commit_elements
    from tests.test_secagg import Market

    start, _, _ = proved
    parties = [
        Party("trainer", account_from_key(bytes([i + 1]) * 32), private_key_from_bytes(bytes([i + 9]) * 32))
        for i in range(5)
    ]
    market = Market(5, rounds=1, d=D, seed=5, parties=parties)
    context = market.context(1)
    commit_mask = lambda stream: commit_elements(norm_build, stream)  # noqa: E731

    def masked(u: int, proven: np.ndarray, sent: np.ndarray) -> bytes:
        domain = norm_domain(context.chain_id, context.market, 1, parties[u].address)
        proof = prove_norm(norm_build, proven, start, domain)
        return secagg.masked_bytes(
            sent,
            party=parties[u],
            index=u,
            keys=market.bundles,
            context=context,
            norm_proof=proof.proof_json,
            ring=BN254,
            commit_mask=commit_mask,
        )

    models = quantize(start + 0.2 * np.sign(market.models))  # within any bound the test uses
    raws = {u: masked(u, models[u], models[u]) for u in (0, 1, 3)}
    raws[2] = masked(2, models[2], quantize(2 * start - models[2]))  # proves one model, masks another
    lie = secagg.read_pair_commitments(raws[1])
    lie[3] = commit_mask(BN254.stream(bytes(32), D))
    raws[1] = _with_pair_commitments(raws[1], lie)

    everyone, survivors = set(range(5)), {0, 1, 2, 3}
    reveals = market.reveals(1, survivors, {4}, [0, 1, 2])
    masks = {u: secagg.read_masked(raw, size=D, context=context, ring=BN254) for u, raw in raws.items()}
    recovery = recover_sum(
        masked=masks, bundles=market.bundles, reveals=reveals, participants=everyone, context=context, ring=BN254
    )
    assert sorted(recovery.self_seeds) == [0, 1, 2, 3] and sorted(recovery.mask_seeds) == [4]
    publics = {i: bytes.fromhex(b.rounds[0].mask_public_key) for i, b in market.bundles.items()}
    found = masked_cheaters(norm_build, raws, recovery, publics, context, D)
    assert dict(found.named) == {2: "its masked model is not the model its norm proof commits to plus its masks"}
    assert found.disputed == ((1, 3),)
    # trainer 3 reveals the pair's point: the pair is settled, trainer 1's commitment named false
    # and trainer 3 checked; a point trainer 1 "reveals" without its key is ignored
    from fedmarket.secagg import round_secrets
    from fedmarket.secagg.dleq import reveal_point
    from fedmarket_schemas.secagg import PairPoint, ShareReveal

    def point_reveal(holder: int, peer: int, seed: bytes) -> ShareReveal:
        proof = reveal_point(seed, publics[peer], context.info(secagg.POINT_LABEL))
        pp = PairPoint(point=proof.point.hex(), challenge=f"{proof.challenge:064x}", response=f"{proof.response:064x}")
        return ShareReveal(
            chain_id=context.chain_id, market=context.market, round=1, holder=holder, pair_points={peer: pp}
        )

    seed_3 = round_secrets(market.secrets[3], context).mask_seed
    forged = point_reveal(1, 3, bytes([7]) * 32)  # another key than trainer 1's: its proof fails
    assert secagg.revealed_points([forged], publics, context) == {}
    points = secagg.revealed_points([forged, point_reveal(3, 1, seed_3)], publics, context)
    assert list(points) == [(1, 3)]
    settled = masked_cheaters(norm_build, raws, recovery, publics, context, D, points)
    assert dict(settled.named) == {
        1: "its commitment to its pair mask with trainer 3 is not that mask's",
        2: "its masked model is not the model its norm proof commits to plus its masks",
    }
    assert settled.disputed == ()
    # without the lie every survivor is checked, and still only trainer 2 is named
    honest_1 = masked(1, models[1], models[1])
    fair = masked_cheaters(norm_build, {**raws, 1: honest_1}, recovery, publics, context, D)
    assert list(fair.named) == [2] and fair.disputed == ()
    # a masked model that stores no pair commitments names its trainer
    bare = _with_pair_commitments(raws[0], None)
    assert (
        "no commitments to its pair masks"
        in masked_cheaters(norm_build, {**raws, 0: bare}, recovery, publics, context, D).named[0]
    )


def _with_pair_commitments(raw: bytes, claims: dict[int, bytes] | None) -> bytes:
    """The stored masked model with other pair commitments (None: none at all)."""
    from safetensors.numpy import load, save

    from fedmarket.ml.updates import header_metadata

    tensors, metadata = load(raw), header_metadata(raw)
    del tensors["pair_commitments"], metadata["pair_peers"]
    if claims is not None:
        tensors["pair_commitments"] = np.frombuffer(b"".join(claims.values()), dtype=np.uint8).reshape(len(claims), 64)
        metadata["pair_peers"] = json.dumps(list(claims))
    return save(tensors, metadata=metadata)


def test_clipping_brings_an_update_within_the_bound_on_the_grid():
    rng = np.random.default_rng(0)
    start = quantize(rng.normal(0, 1, 650))
    far = start + rng.normal(0, 1, 650) * 10
    clipped = clip_to_bound(far, start, 3.0)
    assert on_grid(clipped) and 3.0 - np.sqrt(650) * STEP <= np.linalg.norm(clipped - start) <= 3.0
    near = quantize(start + 0.01)
    assert np.array_equal(clip_to_bound(near, start, 3.0), near)


def test_a_norm_bound_market_excludes_updates_without_a_valid_proof_and_names_and_excludes_a_cheater(
    tmp_path, norm_build
):
    from fedmarket.context import Platform
    from fedmarket.ml.models import parameter_count
    from fedmarket.ml.updates import decode_update
    from fedmarket.secagg import BN254, MaskContext
    from fedmarket.secagg import onchain as secagg
    from fedmarket.zk import commit_elements
    from fedmarket_flows.market import market_flow
    from fedmarket_flows.trainer import secure_duties
    from fedmarket_tasks.chain_ops import submit_update
    from fedmarket_tasks.secure import check_masked, mask_and_store
    from tests.test_secure_market import publish

    settings = Settings(
        store_dir=tmp_path / "blocks",
        results_dir=tmp_path / "results",
        state_dir=tmp_path / "state",
        zk_cache_dir=norm_build.dir.parent,
    )
    platform = Platform.from_settings(settings)
    rng = np.random.default_rng(1)
    data = Dataset(rng.integers(0, 17, (200, 3)).astype(np.float32), rng.integers(0, 2, 200))
    schema = DataSchema(feature_count=3, labels=(0, 1))
    with use_platform(platform):
        market, _, aggregator, members, task = publish(
            platform, trainers=4, rounds=3, data=data, schema=schema, norm_bound=1.0
        )
        assert parameter_count(task.model) == D
        start = None
        models = quantize(rng.normal(0, 1.0, (4, D)))

        def masked(i: int, round: int, model: np.ndarray, proof=None) -> bytes:
            board = secagg.board_of(market)
            keys = secagg.bundles(platform.store, market, board, board.keyed_mask(market.address), round)
            context = MaskContext(platform.chain.chain_id, market.address, round)
            return secagg.masked_bytes(
                model,
                party=members[i],
                index=i,
                keys=keys,
                context=context,
                norm_proof=proof and proof.proof_json,
                ring=BN254,
                commit_mask=lambda stream: commit_elements(norm_build, stream),
            )

        def play(round: int) -> None:
            nonlocal start
            if round == 2:
                return cheat()
            if round == 3:  # everyone masks and proves honestly
                for i in range(4):
                    submit_update(
                        market.address,
                        members[i].address,
                        3,
                        *mask_and_store(market.address, members[i].address, 3, models[i], task),
                    )
                return None
            start = decode_update(platform.store.get(market.model_cid(1)), task.model)
            for i in (0, 2):  # both models are beyond the bound: their trainers clip them
                far = models[i] if i == 0 else start + 10 * (models[i] - start)
                submit_update(
                    market.address,
                    members[i].address,
                    1,
                    *mask_and_store(market.address, members[i].address, 1, far, task),
                )
            # trainer 1 masks a model but proves nothing; trainer 3 proves its true norm, past the bound
            domain = norm_domain(platform.chain.chain_id, market.address, 1, members[3].address)
            over = prove_norm(norm_build, models[3], start, domain)
            for i, proof in ((1, None), (3, over)):
                commitment = proof.commitment if proof else poseidon_commitment(models[i])
                raw = masked(i, 1, models[i], proof)
                submit_update(market.address, members[i].address, 1, str(platform.store.put(raw)), commitment)

        def cheat() -> None:
            """Round 2: trainer 2 proves one model within the bound and masks another, also within it."""
            second = decode_update(platform.store.get(market.model_cid(2)), task.model)
            for i in (0, 1, 3):
                submit_update(
                    market.address,
                    members[i].address,
                    2,
                    *mask_and_store(market.address, members[i].address, 2, models[i], task),
                )
            proven = clip_to_bound(models[2], second, 1.0)
            domain = norm_domain(platform.chain.chain_id, market.address, 2, members[2].address)
            proof = prove_norm(norm_build, proven, second, domain)
            raw = masked(2, 2, clip_to_bound(2 * second - models[2], second, 1.0), proof)
            # and hides behind its pair with trainer 0: a false commitment to that pair's stream
            lie = secagg.read_pair_commitments(raw)
            lie[0] = commit_elements(norm_build, BN254.stream(bytes(32), D))
            raw = _with_pair_commitments(raw, lie)
            submit_update(market.address, members[2].address, 2, str(platform.store.put(raw)), proof.commitment)

        def duties(round: int | None = None) -> None:
            for t in members:
                secure_duties(market.address, t.address)

        reports, _ = market_flow(
            market.address, aggregator.address, play, poll_s=0.01, key_step=duties, reveal_step=duties
        )
        assert reports[0].benign_mask == 0b0101
        for i in (1, 3):
            assert reports[0].flag_reasons[members[i].address] == "excluded: MaskedMalformed"
        why = check_masked.fn(market.address, 1, task)
        assert why[1].detail.startswith("norm proof: no norm proof is stored")
        assert (
            why[3].detail
            == f"norm proof: the proven update norm {np.linalg.norm(models[3] - start):.4f} exceeds the task's bound 1"
        )
        aggregate = decode_update(platform.store.get(reports[0].aggregate_cid), task.model)
        assert np.linalg.norm(aggregate - start) <= 1.0 + STEP  # the survivors clipped to the bound

        # round 2: every proof verifies, but the masked models do not add up to the proven ones;
        # trainer 0's daemon revealed its pair point with trainer 2, which names trainer 2
        second = reports[1]
        assert second.benign_mask == 0 and second.aggregate_cid == reports[0].aggregate_cid
        board = secagg.board_of(market)
        reveals = secagg.read_reveals(platform.store, market, board, 2)
        # (trainer 2's daemon, which runs the honest code, reveals it too)
        assert {r.holder: set(r.pair_points) for r in reveals if r.pair_points} == {0: {2}, 2: {0}}
        assert second.flag_reasons[members[2].address] == (
            "voided, named: its commitment to its pair mask with trainer 0 is not that mask's"
        )
        for i in (0, 1, 3):
            assert second.flag_reasons[members[i].address].startswith("voided: the survivors' masked models")
        assert check_masked.fn(market.address, 2, task) == {}

        # round 3: the named trainer is excluded (a dropout: its masks removed, its model unseen), and
        # the honest three are counted
        third = reports[2]
        assert third.benign_mask == 0b1011
        assert third.flag_reasons[members[2].address] == "excluded: MaskedMalformed"
        assert check_masked.fn(market.address, 3, task)[2].detail == (
            "named in round 2: its commitment to its pair mask with trainer 0 is not that mask's"
        )
        audit = audit_market(market, platform.store)
        assert audit.passed and all(c.status == "pass" for c in audit.checks), audit.checks
        assert "3 exclusions re-checked" in {c.name: c for c in audit.checks}["exclusions"].detail


def test_bench_norm_prints_what_a_proof_costs(norm_build, monkeypatch):
    from tests.test_cli import bench_json

    monkeypatch.setenv("FEDMARKET_ZK_CACHE_DIR", str(norm_build.dir.parent))  # the session's build, cached
    (row,) = bench_json("norm", "--params", str(D))
    assert (row["params"], row["logrows"], row["setup_s"]) == (D, norm_build.logrows, 0.0)
    assert row["rows"] > 0 and row["proof_bytes"] > 1000 and row["prove_s"] > 0 and row["verify_s"] > 0
    assert row["norm_error"] == 0.0
