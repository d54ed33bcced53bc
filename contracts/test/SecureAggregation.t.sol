// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {ISecureAggregation} from "../src/ISecureAggregation.sol";
import {SecureAggregation} from "../src/SecureAggregation.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// The secure-aggregation board: keys between rounds, reveals once a round's survivors are fixed,
/// complaints against a dealer and its answers between rounds.
contract SecureAggregationTest is MarketFixture {
    SecureAggregation internal board;

    function setUp() public override {
        super.setUp();
        board = SecureAggregation(factory.secureAggregation());
    }

    function _post(DataMarket market, uint256 i) private {
        vm.prank(trainerAddrs[i]);
        board.postKeys(address(market), keccak256(abi.encode("keys", i)));
    }

    function _excludeOne(DataMarket market, uint32 round, uint32 index) private {
        IDataMarket.Exclusion[] memory list = new IDataMarket.Exclusion[](1);
        list[0] = IDataMarket.Exclusion(index, IDataMarket.ExclusionReason.MalformedUpdate, keccak256("key"));
        vm.prank(aggregator);
        market.exclude(round, list);
    }

    function test_keysOnlyFromActiveTrainersOfTrainingMarketsBetweenRounds() public {
        DataMarket market = create(4, 2);
        registerAll(market);
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NotTraining.selector, address(market)));
        board.postKeys(address(market), bytes32(uint256(1)));
        revealAll(market);

        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.UnknownMarket.selector, stranger));
        board.postKeys(stranger, bytes32(uint256(1)));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NotActive.selector, address(market), stranger));
        board.postKeys(address(market), bytes32(uint256(1)));
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(ISecureAggregation.InvalidCid.selector);
        board.postKeys(address(market), bytes32(0));

        vm.expectEmit(address(board));
        emit ISecureAggregation.KeysPosted(address(market), trainerAddrs[0], 0, 1, keccak256(abi.encode("keys", 0)));
        _post(market, 0);
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(ISecureAggregation.KeysAlreadyPosted.selector, address(market), trainerAddrs[0])
        );
        board.postKeys(address(market), bytes32(uint256(2)));
        _post(market, 1);

        uint32 round = openRound(market);
        vm.prank(trainerAddrs[2]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.RoundInProgress.selector, address(market), round));
        board.postKeys(address(market), bytes32(uint256(3)));
        submitMask(market, round, 0xF);
        finalize(market, round, 0xF);
        // between rounds: keys posted now first count for round 2
        vm.expectEmit(address(board));
        emit ISecureAggregation.KeysPosted(address(market), trainerAddrs[2], 2, 2, keccak256(abi.encode("keys", 2)));
        _post(market, 2);
        assertEq(board.keyedMask(address(market)), 0x7, "keyed: 0, 1 and 2");
    }

    function test_revealsOpenOnceSubmissionsAreFixedWithTheChainsSurvivors() public {
        DataMarket market = start(5, 2);
        for (uint256 i = 0; i < 4; ++i) _post(market, i); // trainer 4 never posts keys
        uint32 round = openRound(market);
        submitMask(market, round, 0x1B); // trainers 0, 1, 3 and 4; 2 drops
        _excludeOne(market, round, 1);

        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.RevealsNotOpen.selector, address(market), round));
        board.revealShares(address(market), round, bytes32(uint256(1)));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NotAggregator.selector, address(market), stranger));
        board.openReveals(address(market), round);
        vm.startPrank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.RoundNotOpen.selector, address(market), round + 1));
        board.openReveals(address(market), round + 1);
        uint64 deadline = market.getRound(round).deadline;
        vm.expectRevert(
            abi.encodeWithSelector(ISecureAggregation.SubmissionsStillOpen.selector, address(market), round, deadline)
        );
        board.openReveals(address(market), round);
        vm.warp(deadline + 1);
        vm.expectEmit(address(board));
        emit ISecureAggregation.RevealsOpened(address(market), round, 0xF, 0x9); // keyed 0-3; survivors 0 and 3
        board.openReveals(address(market), round);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.RevealsAlreadyOpen.selector, address(market), round));
        board.openReveals(address(market), round);
        vm.stopPrank();

        // any active holder reveals once, the dropped trainer 2 included
        vm.expectEmit(address(board));
        emit ISecureAggregation.SharesRevealed(address(market), round, trainerAddrs[2], 2, bytes32(uint256(7)));
        vm.prank(trainerAddrs[2]);
        board.revealShares(address(market), round, bytes32(uint256(7)));
        vm.prank(trainerAddrs[2]);
        vm.expectRevert(
            abi.encodeWithSelector(ISecureAggregation.AlreadyRevealed.selector, address(market), round, trainerAddrs[2])
        );
        board.revealShares(address(market), round, bytes32(uint256(8)));
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(ISecureAggregation.InvalidCid.selector);
        board.revealShares(address(market), round, bytes32(0));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NotActive.selector, address(market), stranger));
        board.revealShares(address(market), round, bytes32(uint256(9)));

        ISecureAggregation.RoundReveals memory r = board.roundReveals(address(market), round);
        assertTrue(r.open, "open");
        assertEq(r.participants, 0xF, "participants");
        assertEq(r.survivors, 0x9, "survivors");
        assertEq(r.revealed, 0x4, "revealed");
    }

    function test_revealsOpenBeforeTheDeadlineWhenEveryoneSubmitted() public {
        DataMarket market = start(3, 1);
        for (uint256 i = 0; i < 3; ++i) _post(market, i);
        uint32 round = openRound(market);
        submitMask(market, round, 0x7);
        vm.prank(aggregator);
        board.openReveals(address(market), round);
        assertEq(board.roundReveals(address(market), round).survivors, 0x7, "survivors");
        finalize(market, round, 0x7);
        vm.prank(aggregator); // the market has moved on to settlement
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NotTraining.selector, address(market)));
        board.openReveals(address(market), round);
    }

    function test_aFullMarketOf128FitsTheMasks() public {
        DataMarket market = start(128, 1);
        for (uint256 i = 0; i < 128; ++i) _post(market, i);
        assertEq(board.keyedMask(address(market)), type(uint128).max, "all keyed");
        uint32 round = openRound(market);
        submitMask(market, round, type(uint128).max);
        vm.prank(aggregator);
        uint256 before = gasleft();
        board.openReveals(address(market), round); // reads L commitments through submittedMask
        assertLt(before - gasleft(), 1_000_000, "openReveals at L = 128");
        vm.prank(trainerAddrs[127]);
        board.revealShares(address(market), round, bytes32(uint256(1)));
        assertEq(board.roundReveals(address(market), round).revealed, uint128(1) << 127, "the last bit");
    }

    function test_complaintsAndAnswersBetweenRoundsOncePerHolderAndDealer() public {
        DataMarket market = start(4, 2);
        for (uint256 i = 0; i < 3; ++i) _post(market, i); // trainer 3 posts no keys
        address m = address(market);

        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NotKeyed.selector, m, 3));
        board.complain(m, 3);
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NotKeyed.selector, m, 200));
        board.complain(m, 200);
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.OwnKeys.selector, m, trainerAddrs[0]));
        board.complain(m, 0);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NotActive.selector, m, stranger));
        board.complain(m, 0);

        // before round 1: a complaint and its answer count from round 1
        vm.expectEmit(address(board));
        emit ISecureAggregation.Complained(m, 0, 3, 1); // a holder without keys of its own may complain
        vm.prank(trainerAddrs[3]);
        board.complain(m, 0);
        vm.prank(trainerAddrs[3]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.AlreadyComplained.selector, m, 0, 3));
        board.complain(m, 0);
        assertEq(board.complainedMask(m, 0), 0x8, "holder 3 against dealer 0");

        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NoComplaint.selector, m, 0, 1));
        board.answer(m, 1, bytes32(uint256(5)));
        vm.prank(trainerAddrs[1]); // only the dealer complained against answers
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NoComplaint.selector, m, 1, 3));
        board.answer(m, 3, bytes32(uint256(5)));
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.NoComplaint.selector, m, 0, 300));
        board.answer(m, 300, bytes32(uint256(5)));
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(ISecureAggregation.InvalidCid.selector);
        board.answer(m, 3, bytes32(0));
        vm.expectEmit(address(board));
        emit ISecureAggregation.Answered(m, 0, 3, 1, bytes32(uint256(5)));
        vm.prank(trainerAddrs[0]);
        board.answer(m, 3, bytes32(uint256(5)));
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.AlreadyAnswered.selector, m, 0, 3));
        board.answer(m, 3, bytes32(uint256(6)));
        assertEq(board.answeredMask(m, 0), 0x8, "answered holder 3");

        // mid-round: neither; once the round is finalized, both count from round 2
        uint32 round = openRound(market);
        vm.prank(trainerAddrs[2]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.RoundInProgress.selector, m, round));
        board.complain(m, 1);
        vm.prank(trainerAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(ISecureAggregation.RoundInProgress.selector, m, round));
        board.answer(m, 3, bytes32(uint256(6)));
        submitMask(market, round, 0xF);
        finalize(market, round, 0xF);
        vm.expectEmit(address(board));
        emit ISecureAggregation.Complained(m, 1, 2, 2);
        vm.prank(trainerAddrs[2]);
        board.complain(m, 1);
        vm.expectEmit(address(board));
        emit ISecureAggregation.Answered(m, 1, 2, 2, bytes32(uint256(7)));
        vm.prank(trainerAddrs[1]);
        board.answer(m, 2, bytes32(uint256(7)));
    }

    function test_everyHolderOf128ComplainsAndIsAnsweredInTheMasks() public {
        DataMarket market = start(128, 1);
        _post(market, 0);
        for (uint256 h = 1; h < 128; ++h) {
            vm.prank(trainerAddrs[h]);
            board.complain(address(market), 0);
            vm.prank(trainerAddrs[0]);
            board.answer(address(market), uint32(h), bytes32(h));
        }
        assertEq(board.complainedMask(address(market), 0), type(uint128).max - 1, "127 holders");
        assertEq(board.answeredMask(address(market), 0), type(uint128).max - 1, "127 answers");
    }
}
