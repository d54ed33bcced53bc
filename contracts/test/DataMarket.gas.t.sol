// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {EzklCircuitVerifier} from "../src/EzklCircuitVerifier.sol";
import {EzklSettlementVerifier} from "../src/EzklSettlementVerifier.sol";
import {AllowedVerifier, MarketFixture, PinnedVerifier, pinSettlement, pinThrough} from "./utils/MarketFixture.sol";

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
        EzklCircuitVerifier sv = EzklCircuitVerifier(verifiers.deploySettlementVerifier(halo2, l, 20, 1));
        (DataMarket market, int256[] memory c) = _settlementReady(l, address(sv), 2);
        uint256[] memory free = new uint256[](6); // [correct, splitSeed, h(public), K, chunk hashes]
        (free[0], free[1], free[2], free[3], free[4], free[5]) = (17, uint256(market.splitSeed()), 13, 2, 101, 102);
        bytes memory proof = pinSettlement(halo2, sv, market.contributionInstances(1, 8500, c), free);
        _proveAndSettle(market, c, proof, "proveContributions gas at L = 64 (pinned Halo2 verifier)");
    }

    /// As above with the adapter's most parts, each a proof of realistic size (the L = 8 circuit's
    /// 3,840 bytes): its loop over parts, at its bound on parts and at its bound on their
    /// instances together (4 parts at L = 64; 5 are refused).
    function test_contributionProofInTheMostPartsFitsABlock() public {
        _mostParts(8, 16, "proveContributions gas at L = 8, 16 parts (stand-in verifiers)");
        _mostParts(verifiers.MAX_SETTLEMENT_TRAINERS(), 4, "proveContributions gas at L = 64, 4 parts (stand-in verifiers)");
        AllowedVerifier halo2 = new AllowedVerifier();
        uint32 l = verifiers.MAX_SETTLEMENT_TRAINERS();
        vm.expectRevert(abi.encodeWithSelector(EzklSettlementVerifier.InvalidSettlementShape.selector, 10, 5));
        verifiers.deploySettlementVerifier(halo2, l, 10, 5);
    }

    function _mostParts(uint32 l, uint32 p, string memory label) private {
        AllowedVerifier halo2 = new AllowedVerifier();
        EzklSettlementVerifier sv = EzklSettlementVerifier(verifiers.deploySettlementVerifier(halo2, l, 10, p));
        (DataMarket market, int256[] memory c) = _settlementReady(l, address(sv), 2 * p);
        // [correct_0, splitSeed, h(public), K, 2P chunk hashes, then each other part's counts]
        uint256[] memory free = new uint256[](4 + 2 * p + (p - 1) * (l + 1));
        (free[0], free[1], free[2], free[3]) = (p % 2 == 0 ? 8 : 9, uint256(market.splitSeed()), 13, 2 * p);
        for (uint256 j = 0; j < 2 * p; ++j) {
            free[4 + j] = 101 + j;
        }
        for (uint256 j = 1; j < p; ++j) {
            uint256 at = 4 + 2 * p + (j - 1) * (l + 1);
            free[at] = 8 + j % 2; // 8.5 of 10 correct per part: 8,500 bps
            for (uint256 i = 0; i < l; ++i) {
                free[at + 1 + i] = j + i;
            }
        }
        uint256[] memory inst = market.contributionInstances(1, 8500, c);
        bytes[] memory proofs = new bytes[](p);
        for (uint256 j = 0; j < p; ++j) {
            (bool ok, uint256[] memory part) = sv.partInstancesFor(inst, free, j);
            assertTrue(ok, "every part fits");
            halo2.allow(part);
            proofs[j] = new bytes(3840);
            for (uint256 b = 0; b < 3840; ++b) {
                proofs[j][b] = bytes1(uint8(1 + (b + j) % 255)); // non-zero calldata bytes
            }
        }
        _proveAndSettle(market, c, abi.encode(proofs, free), label);
    }

    /// A market of `l` trainers and one round, with a settlement verifier over `k` data chunks,
    /// its round finalized; and contributions, every one non-zero.
    function _settlementReady(uint32 l, address sv, uint256 k) private returns (DataMarket market, int256[] memory c) {
        PinnedVerifier rounds = new PinnedVerifier();
        address rv = verifiers.deployRoundVerifier(rounds, l);
        IDataMarket.Spec memory s = spec(l, 1, rv, sv);
        uint256[] memory chunks = new uint256[](k);
        for (uint256 j = 0; j < k; ++j) {
            chunks[j] = 101 + j;
        }
        s.dataCommitment = bytes32(uint256(keccak256(abi.encode(chunks))) % DataMarket(factory.implementation()).FIELD());
        vm.deal(owner, required(l, 1) + 1 ether);
        market = createWith(s, required(l, 1));
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
        c = new int256[](l);
        for (uint256 i = 0; i < l; ++i) {
            c[i] = i % 2 == 0 ? int256(i + 1) : -int256(i + 1);
        }
    }

    function _proveAndSettle(DataMarket market, int256[] memory c, bytes memory proof, string memory label) private {
        vm.prank(aggregator);
        uint256 before = gasleft();
        market.proveContributions(1, 8500, c, proof);
        uint256 used = before - gasleft();
        emit log_named_uint(label, used);
        assertLt(used, LIMIT, "proveContributions");
        vm.prank(aggregator);
        market.settle(8500, c);
        withdrawAll(market);
    }
}
