// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {EzklCircuitVerifier} from "../src/EzklCircuitVerifier.sol";
import {MarketFixture, PinnedVerifier, pinThrough} from "./utils/MarketFixture.sol";

/// The loops over rounds x trainers at their bounds: settling, or forcing out a stalled
/// aggregator, from a market of MAX_TRAINERS trainers that ran MAX_ROUNDS rounds with everyone
/// kept every round, stays under 15M gas (half of a mainnet block), so no market can grow past
/// the point where its escrow could no longer be paid out.
contract DataMarketGasTest is MarketFixture {
    uint256 internal constant LIMIT = 15_000_000;

    function _longest() private returns (DataMarket market) {
        uint32 l = uint32(DataMarket(factory.implementation()).MAX_TRAINERS());
        uint32 t = uint32(DataMarket(factory.implementation()).MAX_ROUNDS());
        vm.deal(owner, required(l, t) + 1 ether);
        market = start(l, t);
        uint256 everyone = (uint256(1) << l) - 1;
        for (uint32 r = 1; r <= t; ++r) {
            if (r < t) {
                playRound(market, everyone, uint128(everyone));
            } else {
                uint32 round = openRound(market);
                submitMask(market, round, everyone);
                finalize(market, round, uint128(everyone));
            }
        }
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Settlement), "every round finalized");
    }

    function test_settleAtTheBoundsFitsABlock() public {
        DataMarket market = _longest();
        int256[] memory c = new int256[](market.trainerCount());
        for (uint256 i = 0; i < c.length; ++i) {
            c[i] = int256(i + 1);
        }
        uint256 snapshot = vm.snapshotState();
        vm.prank(aggregator);
        uint256 before = gasleft();
        market.settle(9500, c);
        uint256 used = before - gasleft();
        emit log_named_uint("settle gas at L = 128, T = MAX_ROUNDS", used);
        assertLt(used, LIMIT, "settle");

        vm.revertToState(snapshot);
        vm.warp(market.aggregatorDeadline() + 1);
        before = gasleft();
        market.forceSettle();
        used = before - gasleft();
        emit log_named_uint("forceSettle gas at L = 128, T = MAX_ROUNDS", used);
        assertLt(used, LIMIT, "forceSettle");
        withdrawAll(market);
    }

    /// A round's contribution proof at the factory's bound on settlement verifiers, every contribution non-zero (each a first
    /// write), through the factory's settlement adapter, then the proven settle.
    function test_contributionProofAtTheBoundFitsABlock() public {
        uint32 l = verifiers.MAX_SETTLEMENT_TRAINERS();
        PinnedVerifier halo2 = new PinnedVerifier();
        PinnedVerifier rounds = new PinnedVerifier();
        address rv = verifiers.deployRoundVerifier(rounds, l);
        EzklCircuitVerifier sv = EzklCircuitVerifier(verifiers.deploySettlementVerifier(halo2, l, 20));
        IDataMarket.Spec memory s = spec(l, 1, rv, address(sv));
        uint256[] memory chunks = new uint256[](2);
        (chunks[0], chunks[1]) = (101, 102);
        s.dataCommitment = bytes32(uint256(keccak256(abi.encode(chunks))) % DataMarket(factory.implementation()).FIELD());
        vm.deal(owner, required(l, 1) + 1 ether);
        DataMarket market = createWith(s, required(l, 1));
        registerAll(market);
        revealAll(market);
        uint32 round = openRound(market);
        uint256 everyone = (uint256(1) << l) - 1;
        submitMask(market, round, everyone);
        uint256[] memory roundFree = new uint256[](1); // h(hints): every slot present
        roundFree[0] = 11;
        bytes32 agg = bytes32(uint256(1001));
        bytes memory roundProof =
            pinThrough(rounds, EzklCircuitVerifier(rv), market.roundInstances(round, agg, uint128(everyone)), roundFree);
        vm.prank(aggregator);
        market.finalizeRound(round, keccak256("agg"), agg, uint128(everyone), roundProof);

        int256[] memory c = new int256[](l);
        for (uint256 i = 0; i < l; ++i) {
            c[i] = i % 2 == 0 ? int256(i + 1) : -int256(i + 1);
        }
        uint256[] memory free = new uint256[](6); // [correct, splitSeed, h(public), K, chunk hashes]
        (free[0], free[1], free[2], free[3], free[4], free[5]) = (17, uint256(market.splitSeed()), 13, 2, 101, 102);
        bytes memory proof = pinThrough(halo2, sv, market.contributionInstances(1, 8500, c), free);
        vm.prank(aggregator);
        uint256 before = gasleft();
        market.proveContributions(1, 8500, c, proof);
        uint256 used = before - gasleft();
        emit log_named_uint("proveContributions gas at L = 64 (pinned Halo2 verifier)", used);
        assertLt(used, LIMIT, "proveContributions");
        vm.prank(aggregator);
        market.settle(8500, c);
        withdrawAll(market);
    }
}
