"""Events read from a node are decoded by fedmarket (fedmarket/chain/adapter.py `Chain.events`),
not by web3: they must be web3's own EventData, field for field, with and without filters."""

from __future__ import annotations

import pytest

from fedmarket.context import Platform, use_platform
from fedmarket.errors import ChainError
from fedmarket.settings import Settings
from fedmarket_flows.market import open_next_round
from tests.helpers import cid_of, create_market


def test_a_markets_events_decode_as_web3_decodes_them(anvil_url, tmp_path):
    platform = Platform.from_settings(Settings(chain_rpc_url=anvil_url, store_dir=tmp_path / "blocks"))
    with use_platform(platform):
        market, _, aggregator, members, _ = create_market(platform, trainers=3, rounds=2)
        open_next_round(market.address, aggregator.address)
        for i, t in enumerate(members[:2]):
            market.submit(t.account, 1, cid_of(platform, f"update {i}".encode()), "0x" + f"{i + 1:064x}")
        contract, chain = market.contract, platform.chain
        start = market.creation_block()
        names = [e["name"] for e in contract.abi if e.get("type") == "event"]
        seen = set()
        for name in names:
            ours = chain.events(contract, name, start)
            theirs = getattr(contract.events, name)().get_logs(from_block=start)
            got = [dict(o) | {"args": dict(o["args"])} for o in ours]
            want = [dict(t) | {"args": dict(t["args"])} for t in theirs]
            assert got == want, name
            seen |= {name} if ours else set()
        assert {"TrainerRegistered", "RoundOpened", "UpdateSubmitted"} <= seen
        by_trainer = chain.events(contract, "UpdateSubmitted", start, round=1, trainer=members[1].address)
        assert [log["args"]["trainer"] for log in by_trainer] == [members[1].address]
        assert chain.events(contract, "UpdateSubmitted", start, round=2) == []
        with pytest.raises(ChainError, match="not indexed"):
            chain.events(contract, "UpdateSubmitted", start, cid=b"")


def test_array_arguments_decode_as_web3_decodes_them():
    """Arrays (int256[] contributions) come back as web3's lists, indexed values as filters find them."""
    from eth_abi import encode
    from eth_utils import event_abi_to_log_topic
    from hexbytes import HexBytes
    from web3 import Web3

    from fedmarket.chain.adapter import Chain
    from fedmarket.chain.artifacts import load_artifact
    from fedmarket.settings import load_settings

    abi = load_artifact(load_settings().artifacts_dir, "DataMarket")["abi"]
    contract = Web3().eth.contract(abi=abi)
    entry = next(e for e in abi if e.get("type") == "event" and e["name"] == "ContributionsProven")
    raw = {
        "address": "0x" + "ab" * 20,
        "topics": ["0x" + event_abi_to_log_topic(entry).hex(), "0x" + encode(["uint32"], [7]).hex()],
        "data": "0x" + encode(["uint16", "int256[]"], [9_500, [3, -2, 0]]).hex(),
        "blockNumber": "0x10",
        "blockHash": "0x" + "01" * 32,
        "transactionHash": "0x" + "02" * 32,
        "transactionIndex": "0x0",
        "logIndex": "0x3",
    }
    web3_form = {
        **raw,
        "topics": [HexBytes(t) for t in raw["topics"]],
        "data": HexBytes(raw["data"]),
        "blockHash": HexBytes(raw["blockHash"]),
        "transactionHash": HexBytes(raw["transactionHash"]),
        **{k: int(raw[k], 16) for k in ("blockNumber", "transactionIndex", "logIndex")},
        "address": Web3.to_checksum_address(raw["address"]),  # as web3's formatters hand it over
        "removed": False,
    }
    _, indexed, data = Chain._event_signature(contract, "ContributionsProven")
    ours = Chain._event_data("ContributionsProven", raw, indexed, data)
    theirs = contract.events.ContributionsProven().process_log(web3_form)
    assert ours == theirs and ours["args"]["contributions"] == [3, -2, 0] and ours["args"]["round"] == 7
