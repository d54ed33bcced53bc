// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {EzklCircuitVerifier} from "../src/EzklCircuitVerifier.sol";
import {MarketFixture, PinnedVerifier, pinThrough} from "./utils/MarketFixture.sol";

/// `exclude`: the aggregator leaves a submission it cannot use out of its round, on chain, with a
/// reason and its evidence; the excluded slot is absent from the proofs and earns nothing.
contract DataMarketExclusionTest is MarketFixture {
    bytes32 internal constant KEY = keccak256("the submission's AEAD key");

    function _one(uint32 index, IDataMarket.ExclusionReason reason, bytes32 key)
        private
        pure
        returns (IDataMarket.Exclusion[] memory list)
    {
        list = new IDataMarket.Exclusion[](1);
        list[0] = IDataMarket.Exclusion(index, reason, key);
    }

    function test_exclusionRules() public {
        DataMarket market = start(3, 2);
        uint32 round = openRound(market);
        submitMask(market, round, 3); // trainer 2 does not submit
        IDataMarket.ExclusionReason opens = IDataMarket.ExclusionReason.DoesNotOpen;

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotAggregator.selector, stranger));
        market.exclude(round, _one(0, opens, KEY));

        vm.startPrank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.RoundNotOpen.selector, round + 1));
        market.exclude(round + 1, _one(0, opens, KEY));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NothingToExclude.selector, round, 2));
        market.exclude(round, _one(2, opens, KEY)); // no submission to exclude
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NothingToExclude.selector, round, 3));
        market.exclude(round, _one(3, opens, KEY)); // no such trainer
        // the evidence is there exactly when the reason carries it
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.InvalidExclusion.selector, 0, opens, bytes32(0)));
        market.exclude(round, _one(0, opens, bytes32(0)));
        IDataMarket.ExclusionReason replayed = IDataMarket.ExclusionReason.Replayed;
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.InvalidExclusion.selector, 0, replayed, KEY));
        market.exclude(round, _one(0, replayed, KEY));
        IDataMarket.ExclusionReason none = IDataMarket.ExclusionReason.None;
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.InvalidExclusion.selector, 0, none, bytes32(0)));
        market.exclude(round, _one(0, none, bytes32(0)));
        // a masked model's bytes are public: that reason carries no key
        IDataMarket.ExclusionReason masked = IDataMarket.ExclusionReason.MaskedMalformed;
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.InvalidExclusion.selector, 0, masked, KEY));
        market.exclude(round, _one(0, masked, KEY));
        // a reason past the enum does not decode
        (bool ok,) = address(market).call(
            abi.encodeWithSignature("exclude(uint32,(uint32,uint8,bytes32)[])", round, _rawReason(0, 9))
        );
        assertTrue(!ok, "reason 9 is no ExclusionReason");

        // once each, within a call and across calls
        IDataMarket.Exclusion[] memory twice = new IDataMarket.Exclusion[](2);
        twice[0] = IDataMarket.Exclusion(0, opens, KEY);
        twice[1] = IDataMarket.Exclusion(0, replayed, bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AlreadyExcluded.selector, round, 0));
        market.exclude(round, twice);
        vm.expectEmit(address(market));
        emit IDataMarket.SubmissionExcluded(round, trainerAt(0), 0, opens, KEY);
        market.exclude(round, _one(0, opens, KEY));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AlreadyExcluded.selector, round, 0));
        market.exclude(round, _one(0, replayed, bytes32(0)));
        market.exclude(round, _one(1, masked, bytes32(0)));
        assertEq(market.excludedMask(round), 3, "trainers 0 and 1 excluded");

        vm.stopPrank();

        // an excluded submission cannot be sent again, and is not kept
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AlreadySubmitted.selector, round, trainerAt(0)));
        market.submit(round, keccak256("again"), commitmentOf(round, 0));
        vm.warp(block.timestamp + ROUND + 1);
        vm.startPrank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ExcludedSubmissionKept.selector, round, uint128(2)));
        market.finalizeRound(round, keccak256("agg"), bytes32(uint256(1001)), 2, "");
        market.finalizeRound(round, keccak256("agg"), bytes32(uint256(1001)), 0, "");
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.RoundNotOpen.selector, round));
        market.exclude(round, _one(1, opens, KEY)); // finalized: the record is closed
        vm.stopPrank();

        // past the aggregator's window nothing is excluded
        round = openRound(market);
        submitMask(market, round, 7);
        uint64 closes = market.aggregatorDeadline();
        vm.warp(closes + 1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AggregatorWindowClosed.selector, closes));
        market.exclude(round, _one(1, opens, KEY));
    }

    function _rawReason(uint32 index, uint8 reason) private pure returns (bytes memory) {
        return abi.encodePacked(uint256(0x20), uint256(1), uint256(index), uint256(reason), uint256(KEY));
    }

    /// The excluded slot's commitment is zero in both proofs' instances (the circuits' absent
    /// slot, whose hash the prover supplies), and a proof over it as present is rejected.
    function test_anExcludedSubmissionIsAbsentFromTheProofs() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        (DataMarket market, EzklCircuitVerifier rv, uint32 round) = provenRoundOpen(halo2, 3, 1);

        uint256[] memory present = market.roundInstances(round, bytes32(uint256(555)), 3);
        assertEq(present[4], uint256(commitmentOf(round, 2)), "trainer 2's commitment before");
        uint256[] memory free = new uint256[](1); // h(hints)
        free[0] = 11;
        bytes memory overPresent = pinThrough(halo2, rv, present, free);

        vm.prank(aggregator);
        market.exclude(round, _one(2, IDataMarket.ExclusionReason.MalformedUpdate, KEY));
        uint256[] memory inst = market.roundInstances(round, bytes32(uint256(555)), 3);
        assertEq(inst[2], uint256(commitmentOf(round, 0)), "trainer 0 stays");
        assertEq(inst[4], 0, "trainer 2 absent");
        assertEq(market.commitmentOf(round, 2), commitmentOf(round, 2), "its commitment stays on record");

        vm.startPrank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(round, keccak256("agg"), bytes32(uint256(555)), 3, overPresent);
        uint256[] memory absent = new uint256[](2); // h(W_2) of the absent slot, h(hints)
        (absent[0], absent[1]) = (99, 11);
        bytes memory proof = pinThrough(halo2, rv, inst, absent);
        market.finalizeRound(round, keccak256("agg"), bytes32(uint256(555)), 3, proof);
        vm.stopPrank();

        int256[] memory c = new int256[](3);
        uint256[] memory settlement = market.contributionInstances(round, 9000, c);
        assertEq(settlement[7], uint256(commitmentOf(round, 0)), "the round's contributions: trainer 0");
        assertEq(settlement[9], 0, "the round's contributions: trainer 2 absent");
    }

    /// Excluded every round, a trainer earns nothing; the market still ends with every wei paid.
    function test_anExcludedTrainerEarnsNothingAndEveryFundIsClaimable() public {
        DataMarket market = start(3, 2);
        for (uint32 r = 1; r <= 2; ++r) {
            uint32 round = openRound(market);
            submitMask(market, round, 7);
            vm.prank(aggregator);
            market.exclude(round, _one(1, IDataMarket.ExclusionReason.Unavailable, bytes32(0)));
            vm.prank(aggregator);
            market.finalizeRound(round, keccak256(abi.encode("agg", r)), bytes32(uint256(1000 + r)), 5, "");
        }
        int256[] memory c = new int256[](3);
        (c[0], c[2]) = (1, 1);
        vm.prank(aggregator);
        market.settle(9500, c);
        assertEq(market.benignRounds(1), 0, "never benign");
        assertEq(market.owed(trainerAt(1)), 0, "excluded every round: nothing");
        assertEq(market.owed(trainerAt(0)), 2 * RP + POOL_HIGH / 2, "the others are paid");
        withdrawAll(market);
    }

    /// The loop's worst case: every one of MAX_TRAINERS submissions excluded in one call.
    function test_excludingEveryTrainerAtTheBoundFitsABlock() public {
        uint32 l = uint32(DataMarket(factory.implementation()).MAX_TRAINERS());
        DataMarket market = start(l, 1);
        uint32 round = openRound(market);
        submitMask(market, round, type(uint128).max);
        IDataMarket.Exclusion[] memory all = new IDataMarket.Exclusion[](l);
        for (uint32 i = 0; i < l; ++i) {
            all[i] = IDataMarket.Exclusion(i, IDataMarket.ExclusionReason.DoesNotOpen, keccak256(abi.encode(i)));
        }
        vm.prank(aggregator);
        uint256 before = gasleft();
        market.exclude(round, all);
        uint256 used = before - gasleft();
        emit log_named_uint("exclude gas, all 128 trainers", used);
        assertLt(used, 15_000_000, "exclude at L = 128");
        assertEq(market.excludedMask(round), type(uint128).max, "everyone excluded");
        vm.prank(aggregator);
        market.finalizeRound(round, keccak256("agg"), bytes32(uint256(1001)), 0, "");
    }
}
