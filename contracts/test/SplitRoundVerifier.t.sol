// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {EzklSplitRoundVerifier} from "../src/EzklSplitRoundVerifier.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {IMarketFactory} from "../src/IMarketFactory.sol";
import {IVerifierFactory} from "../src/IVerifierFactory.sol";
import {IProofVerifier} from "../src/IProofVerifier.sol";
import {AllowedVerifier, MarketFixture, PinnedVerifier} from "./utils/MarketFixture.sol";

/// The split round adapter (EzklSplitRoundVerifier): each present slot's chunk hashes, the start
/// model's and the aggregate's must combine to their commitments on chain, every chunk proof must
/// verify with its own hashes, and the rule proof with the chunks' output hashes and the market's
/// public values. The stand-ins check what EZKL's verifiers would: the instances.
contract SplitRoundVerifierTest is MarketFixture {
    uint256 private constant FIELD_ORDER =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;

    DataMarket private market;
    EzklSplitRoundVerifier private rv;
    PinnedVerifier private rule;
    AllowedVerifier private chunk;

    /// A stand-in Poseidon hash of chunk `c` of model `label`.
    function _hash(bytes memory label, uint256 c) private pure returns (uint256) {
        return uint256(keccak256(abi.encode(label, c))) % FIELD_ORDER;
    }

    function _commitment(bytes memory label, uint256 p) private pure returns (bytes32) {
        uint256[] memory column = new uint256[](p);
        for (uint256 c = 0; c < p; ++c) {
            column[c] = _hash(label, c);
        }
        return bytes32(uint256(keccak256(abi.encode(column))) % FIELD_ORDER);
    }

    /// The `hashes` of a round where the slots in `present` submitted model ("update", i).
    function _hashes(uint256 l, uint256 p, uint256 present) private pure returns (uint256[] memory h) {
        uint256 w = l + 4;
        h = new uint256[](p * w + 1);
        for (uint256 c = 0; c < p; ++c) {
            for (uint256 i = 0; i < l; ++i) {
                h[c * w + i] = present >> i & 1 == 1 ? _hash(abi.encode("update", i), c) : 77 + c;
            }
            h[c * w + l] = _hash("start", c);
            h[c * w + l + 1] = _hash("aggregate", c);
            h[c * w + l + 2] = 5; // h(mask): free
            h[c * w + l + 3] = _hash("out", c);
        }
        h[p * w] = 9; // h(hints): free
    }

    function _open(uint32 l, uint32 p, uint256 present) private {
        rule = new PinnedVerifier();
        chunk = new AllowedVerifier();
        rv = EzklSplitRoundVerifier(verifiers.deploySplitRoundVerifier(rule, chunk, l, p));
        market = createWith(spec(l, 1, address(rv), address(0)), required(l, 1));
        registerAll(market);
        revealAll(market);
        vm.roll(block.number + 1);
        vm.prank(aggregator);
        market.openRound(keccak256("start cid"), _commitment("start", p));
        for (uint256 i = 0; i < l; ++i) {
            if (present >> i & 1 == 0) continue;
            vm.prank(trainerAt(i));
            market.submit(1, keccak256(abi.encode("cid", i)), _commitment(abi.encode("update", i), p));
        }
    }

    function _slice(uint256[] memory values, uint256 from, uint256 count) private pure returns (uint256[] memory out) {
        out = new uint256[](count);
        for (uint256 k = 0; k < count; ++k) {
            out[k] = values[from + k];
        }
    }

    /// Allow every chunk proof's instances and pin the rule proof's; the market's `proof`.
    function _prove(uint256[] memory inst, uint256[] memory hashes) private returns (bytes memory) {
        uint256 p = rv.chunks();
        uint256 w = rv.trainers() + 4;
        bytes[] memory chunkProofs = new bytes[](p);
        for (uint256 c = 0; c < p; ++c) {
            chunk.allow(_slice(hashes, c * w, w));
            chunkProofs[c] = hex"01";
        }
        (bool ok, uint256[] memory c2) = rv.circuitInstancesFor(inst, hashes, "");
        require(ok, "instances do not fit the rule circuit");
        rule.pin(c2);
        return abi.encode(chunkProofs, hex"02", hashes);
    }

    uint32 private constant L = 3;
    uint32 private constant P = 2;

    function _honest() private returns (uint256[] memory inst) {
        _open(L, P, 3);
        inst = market.roundInstances(1, _commitment("aggregate", P), 3);
    }

    function test_theRuleProofReadsTheChunksOutputsAndTheMarketsValues() public {
        uint256[] memory inst = _honest();
        (bool ok, uint256[] memory c) = rv.circuitInstancesFor(inst, _hashes(L, P, 3), "");
        assertTrue(ok, "the rule's instances");
        assertEq(c.length, P + 3 * L + 9, "the chunks' outputs, the hints, the outputs");
        assertEq(c[0], _hash("out", 0), "chunk 0's output hash");
        assertEq(c[1], _hash("out", 1), "chunk 1's output hash");
        assertEq(c[2], 9, "the hints' hash");
        assertEq(c[3], 1, "round 1");
        assertEq(c[4] + c[5], 2, "slots 0 and 1 present");
        assertEq(c[6], 0, "slot 2 absent");
        assertEq(c[P + 2 * L + 8], 1, "mask bit 0");
        assertEq(c[c.length - 1], 1, "valid");
        assertTrue(rv.verifyProof(_prove(inst, _hashes(L, P, 3)), inst), "honest");
    }

    function test_everyCommittedChunkMustBeTheOneOnChain() public {
        uint256[] memory inst = _honest();
        // a chunk hash of a committed slot, the start model or the aggregate other than the one
        // committed: refused, even with every proof standing in for it
        uint256[4] memory at = [uint256(0), 1, L, L + 1];
        for (uint256 k = 0; k < at.length; ++k) {
            uint256[] memory forged = _hashes(L, P, 3);
            forged[(L + 4) + at[k]] ^= 1; // chunk 1
            assertTrue(!rv.verifyProof(_prove(inst, forged), inst), "another chunk");
        }
        uint256[] memory absent = _hashes(L, P, 3);
        absent[2] = 123;
        assertTrue(rv.verifyProof(_prove(inst, absent), inst), "an absent slot's hashes are free");
    }

    function test_aChunkProofOfAnotherOutputOrAMissingOneIsRefused() public {
        uint256[] memory inst = _honest();
        uint256[] memory hashes = _hashes(L, P, 3);
        _prove(inst, hashes);
        // chunk 0 proven with another output than the rule proof read: one hash serves both
        // proofs, so one of them fails whichever it is
        uint256[] memory other = _hashes(L, P, 3);
        other[L + 3] = _hash("another out", 0);
        chunk.allow(_slice(other, 0, L + 4));
        bytes[] memory two = new bytes[](2);
        two[0] = hex"01";
        two[1] = hex"01";
        assertTrue(!rv.verifyProof(abi.encode(two, hex"02", other), inst), "the rule reads another output");
        bytes[] memory one = new bytes[](1);
        one[0] = hex"01";
        assertTrue(!rv.verifyProof(abi.encode(one, hex"02", hashes), inst), "a chunk proof missing");
        uint256[] memory big = _hashes(L, P, 3);
        big[L + 2] = FIELD_ORDER + 5;
        assertTrue(!rv.verifyProof(abi.encode(two, hex"02", big), inst), "a second encoding");
        assertTrue(rv.verifyProof(abi.encode(two, hex"02", hashes), inst), "the honest one still");
    }

    function test_aForgedMaskOrAnotherAggregateIsRefused() public {
        uint256[] memory inst = _honest();
        bytes memory proof = _prove(inst, _hashes(L, P, 3));
        assertTrue(rv.verifyProof(proof, inst), "honest");
        uint256[] memory forged = market.roundInstances(1, _commitment("aggregate", P), 1);
        assertTrue(!rv.verifyProof(proof, forged), "the mask the rule proof did not show");
        forged = market.roundInstances(1, _commitment("another aggregate", P), 3);
        assertTrue(!rv.verifyProof(proof, forged), "an aggregate the chunks did not hash");
        uint256[] memory short = new uint256[](inst.length - 1);
        assertTrue(!rv.verifyProof(proof, short), "instances of another market shape");
    }

    /// The worst case its loops reach: MAX_TRAINERS slots in MAX_CHUNKS chunks, every slot committed
    /// (the stand-ins' own cost included; EZKL's P + 1 verifications come on top).
    function test_theWorstCaseSplitRoundFitsABlock() public {
        PinnedVerifier v = new PinnedVerifier();
        EzklSplitRoundVerifier shape = new EzklSplitRoundVerifier(v, v, 2, 2);
        uint32 l = uint32(shape.MAX_TRAINERS());
        uint32 p = uint32(shape.MAX_CHUNKS());
        assertEq(l, DataMarket(factory.implementation()).MAX_TRAINERS(), "a market's most trainers");
        uint256 everyone = (uint256(1) << l) - 1;
        _open(l, p, everyone);
        uint256[] memory inst = market.roundInstances(1, _commitment("aggregate", p), uint128(everyone));
        bytes memory proof = _prove(inst, _hashes(l, p, everyone));
        uint256 before = gasleft();
        assertTrue(rv.verifyProof(proof, inst), "honest");
        uint256 used = before - gasleft();
        emit log_named_uint("split adapter gas at L = 128, P = 16, verifiers stood in", used);
        assertLt(used, 10_000_000, "the adapter's own work, a third of a block at most");
    }

    /// The market names the adapter: `finalizeRound` verifies through it, refusing a forged mask.
    function test_aMarketFinalizesARoundProvenByChunks() public {
        uint256[] memory inst = _honest();
        bytes memory proof = _prove(inst, _hashes(L, P, 3));
        bytes32 agg = _commitment("aggregate", P);
        vm.warp(market.getRound(1).deadline + 1); // trainer 2 never submits
        vm.startPrank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(1, keccak256("agg cid"), agg, 1, proof); // a forged mask
        market.finalizeRound(1, keccak256("agg cid"), agg, 3, proof);
        vm.stopPrank();
        assertTrue(market.getRound(1).verified, "verified");
        IVerifierFactory.VerifierInfo memory info = verifiers.verifierInfo(address(rv));
        assertEq(uint256(info.kind), uint256(IVerifierFactory.VerifierKind.SplitRound), "kind");
        assertEq(info.chunks, P, "chunks");
        assertEq(info.trainers, L, "trainers");
        assertEq(info.halo2, address(rule), "the rule circuit's verifier");
    }

    /// The settlement circuit reads each whole model's Poseidon hash, which a split market never
    /// commits: the factory refuses the pair.
    function test_aMarketThatProvesItsSettlementCannotSplitItsRounds() public {
        PinnedVerifier v = new PinnedVerifier();
        address split = verifiers.deploySplitRoundVerifier(v, v, L, P);
        address settlement = verifiers.deploySettlementVerifier(v, L, 10, 1);
        IDataMarket.Spec memory s = spec(L, 1, split, settlement);
        uint256 value = required(L, 1);
        vm.expectRevert(abi.encodeWithSelector(IMarketFactory.SettlementNeedsHashedRounds.selector, split));
        factory.createMarket{value: value}(s);
        vm.expectRevert(abi.encodeWithSelector(IVerifierFactory.NoVerifierCode.selector, stranger));
        verifiers.deploySplitRoundVerifier(v, IProofVerifier(stranger), L, P);
        vm.expectRevert(abi.encodeWithSelector(EzklSplitRoundVerifier.InvalidSplitShape.selector, L, 1));
        verifiers.deploySplitRoundVerifier(v, v, L, 1);
    }

    function test_itsShapeIsBounded() public {
        PinnedVerifier v = new PinnedVerifier();
        vm.expectRevert(abi.encodeWithSelector(EzklSplitRoundVerifier.InvalidSplitShape.selector, 3, 1));
        new EzklSplitRoundVerifier(v, v, 3, 1);
        vm.expectRevert(abi.encodeWithSelector(EzklSplitRoundVerifier.InvalidSplitShape.selector, 3, 17));
        new EzklSplitRoundVerifier(v, v, 3, 17);
        vm.expectRevert(abi.encodeWithSelector(EzklSplitRoundVerifier.InvalidSplitShape.selector, 129, 2));
        new EzklSplitRoundVerifier(v, v, 129, 2);
    }

}
