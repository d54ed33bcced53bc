// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {EzklCircuitVerifier} from "../src/EzklCircuitVerifier.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {IMarketFactory} from "../src/IMarketFactory.sol";
import {IVerifierFactory} from "../src/IVerifierFactory.sol";
import {MarketFixture, PinnedVerifier, pinThrough} from "./utils/MarketFixture.sol";

/// The KZG round adapter (EzklKzgRoundVerifier): the proof's input points must be the models
/// committed on chain. The PinnedVerifier stands in for EZKL's Halo2 verifier, which checks that
/// the points commit to what the proof computed on.
contract KzgRoundVerifierTest is MarketFixture {
    uint256 private constant L = 3;

    /// A stand-in input point for `label` and the market commitment it makes.
    function _point(bytes memory label) private pure returns (bytes memory point, bytes32 commitment) {
        point = abi.encode(keccak256(abi.encode(label, "x")), keccak256(abi.encode(label, "y")));
        commitment = bytes32(uint256(keccak256(point)) % FIELD_ORDER);
    }

    uint256 private constant FIELD_ORDER =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// A market of L trainers over a KZG round adapter, round 1 open from the start model's point,
    /// trainers 0 and 1 submitted (trainer 2 did not).
    function _open(PinnedVerifier halo2) private returns (DataMarket market, EzklCircuitVerifier rv) {
        rv = EzklCircuitVerifier(verifiers.deployKzgRoundVerifier(halo2, uint32(L)));
        market = createWith(spec(uint32(L), 1, address(rv), address(0)), required(uint32(L), 1));
        registerAll(market);
        revealAll(market);
        vm.roll(block.number + 1);
        (, bytes32 start) = _point("start");
        vm.prank(aggregator);
        market.openRound(keccak256("start cid"), start);
        for (uint256 i = 0; i < 2; ++i) {
            (, bytes32 c) = _point(abi.encode("update", i));
            vm.prank(trainerAt(i));
            market.submit(1, keccak256(abi.encode("cid", i)), c);
        }
    }

    /// The proof's leading points: W_0, W_1, W_2 (absent: any), start, aggregate, hints.
    function _points(bytes memory absent) private pure returns (bytes memory points) {
        (bytes memory w0,) = _point(abi.encode("update", uint256(0)));
        (bytes memory w1,) = _point(abi.encode("update", uint256(1)));
        (bytes memory start,) = _point("start");
        (bytes memory agg,) = _point("aggregate");
        points = bytes.concat(w0, w1, absent, start, agg, new bytes(64), hex"c0ffee");
    }

    function test_aProofMustCarryTheCommittedModels() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        (DataMarket market, EzklCircuitVerifier rv) = _open(halo2);
        (, bytes32 agg) = _point("aggregate");
        uint256[] memory inst = market.roundInstances(1, agg, 3);
        bytes memory points = _points(new bytes(64));
        uint256[] memory none = new uint256[](0);
        (bool ok, uint256[] memory c) = rv.circuitInstancesFor(inst, none, points);
        assertTrue(ok, "the committed points fit");
        assertEq(c.length, 3 * L + 8, "the circuit's outputs only");
        assertEq(c[0], 1, "round 1");
        assertEq(c[1] + c[2], 2, "slots 0 and 1 present");
        assertEq(c[3], 0, "slot 2 absent");
        assertEq(c[2 * L + 7], 1, "mask bit 0");
        assertEq(c[3 * L + 7], 1, "valid");

        // another model in any committed slot, the start model or the aggregate: refused
        for (uint256 k = 0; k < 5; ++k) {
            if (k == 2) continue; // the absent slot's point is the prover's own
            bytes memory forged = bytes.concat(points);
            forged[k * 64 + 7] ^= 0x01;
            (ok,) = rv.circuitInstancesFor(inst, none, forged);
            assertTrue(!ok, "a point that is not the commitment on chain");
        }
        (ok,) = rv.circuitInstancesFor(inst, none, _points(abi.encode(uint256(7), uint256(8))));
        assertTrue(ok, "an absent slot's point is free");
        (ok,) = rv.circuitInstancesFor(inst, none, new bytes(6 * 64 - 1));
        assertTrue(!ok, "a proof too short to carry its input points");
        uint256[] memory one = new uint256[](1);
        (ok,) = rv.circuitInstancesFor(inst, one, points);
        assertTrue(!ok, "free values: none in this circuit");

        bytes memory proof = pinThrough(halo2, rv, inst, none, points);
        vm.warp(market.getRound(1).deadline + 1); // trainer 2 never submits
        vm.startPrank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(1, keccak256("agg cid"), agg, 1, proof); // a forged mask
        (, bytes32 other) = _point("another aggregate");
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(1, keccak256("agg cid"), other, 3, proof); // another aggregate
        market.finalizeRound(1, keccak256("agg cid"), agg, 3, proof);
        vm.stopPrank();
        assertTrue(market.getRound(1).verified, "verified");
    }

    function test_aMarketThatProvesItsSettlementNeedsHashedRounds() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        address kzg = verifiers.deployKzgRoundVerifier(halo2, uint32(L));
        address settlement = verifiers.deploySettlementVerifier(halo2, uint32(L), 10, 1);
        IDataMarket.Spec memory s = spec(uint32(L), 1, kzg, settlement);
        uint256 value = required(uint32(L), 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketFactory.SettlementNeedsHashedRounds.selector, kzg));
        factory.createMarket{value: value}(s);
        s.settlementVerifier = address(0);
        factory.createMarket{value: value}(s); // rounds alone: accepted
        assertEq(uint256(verifiers.verifierInfo(kzg).kind), uint256(IVerifierFactory.VerifierKind.KzgRound), "kind");
        vm.expectRevert(abi.encodeWithSelector(IVerifierFactory.InvalidVerifierShape.selector, 0, 0));
        verifiers.deployKzgRoundVerifier(halo2, 0);
    }
}
