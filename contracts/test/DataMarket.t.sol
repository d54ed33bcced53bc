// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {DataMarket} from "../src/DataMarket.sol";
import {MarketFixture, PinnedVerifier, ReentrantTrainer} from "./utils/MarketFixture.sol";

/// Unit tests of the protocol, the economics and every revert, with hand-computed values.
contract DataMarketTest is MarketFixture {
    // ------------------------------------------------------------ factory and creation

    function test_factoryClonesItsOwnImplementation() public {
        DataMarket market = create(4, 2);
        assertTrue(factory.isMarket(address(market)), "indexed");
        assertEq(factory.marketsOf(owner).length, 1, "by owner");
        assertEq(factory.marketsOf(owner)[0], address(market), "by owner address");
        bytes memory code = address(market).code;
        assertEq(code.length, 45, "EIP-1167 proxy");
        address target;
        assembly {
            target := shr(96, mload(add(code, 42))) // 32-byte length word + 10-byte proxy prefix
        }
        assertEq(target, factory.implementation(), "clone of the factory's implementation");
        assertEq(market.owner(), owner, "owner");
        assertEq(market.deposit(), required(4, 2), "deposit");
        assertEq(uint256(market.phase()), uint256(DataMarket.Phase.Registration), "phase");
    }

    function test_marketCannotBeInitializedTwice() public {
        DataMarket market = create(2, 1);
        DataMarket.Spec memory s = spec(2, 1, address(0), address(0));
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        market.initialize(stranger, s);
        DataMarket impl = DataMarket(factory.implementation());
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        impl.initialize(stranger, s);
    }

    function test_depositMustCoverTheLargestPayout() public {
        DataMarket.Spec memory s = spec(4, 3, address(0), address(0));
        uint256 need = 4 * 3 * RP + POOL_HIGH + FEE;
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.InsufficientDeposit.selector, need, need - 1));
        factory.createMarket{value: need - 1}(s);
    }

    function test_specIsValidated() public {
        DataMarket.Spec memory s = spec(129, 1, address(0), address(0));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.InvalidSpec.selector, "trainers"));
        factory.createMarket{value: 100 ether}(s);

        s = spec(2, 1, address(0), address(0));
        s.accuracyThresholds[1] = 8000; // not ascending
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.InvalidSpec.selector, "schedule"));
        factory.createMarket{value: 100 ether}(s);

        s = spec(2, 1, address(0), address(0));
        s.registrationDeadline = uint64(block.timestamp);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.InvalidSpec.selector, "registrationDeadline"));
        factory.createMarket{value: 100 ether}(s);
    }

    // ------------------------------------------------------------ registration and seeds

    function test_registrationRules() public {
        DataMarket market = create(2, 1);
        bytes32 c = market.seedCommitmentFor(owner, seedOf(0));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.PartyCannotTrain.selector, owner));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.PartyCannotTrain.selector, aggregator));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));

        vm.startPrank(trainerAt(0));
        vm.expectRevert(DataMarket.InvalidEncryptionKey.selector);
        market.register(bytes32(0), c, bytes32(uint256(1)));
        vm.expectRevert(DataMarket.InvalidSeedCommitment.selector);
        market.register(bytes32(uint256(1)), bytes32(0), bytes32(uint256(1)));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.AlreadyRegistered.selector, trainerAt(0)));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
        vm.stopPrank();

        uint64 registrationDeadline = market.registrationDeadline();
        vm.warp(block.timestamp + REG_WINDOW + 1);
        vm.prank(trainerAt(1));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.RegistrationClosed.selector, registrationDeadline));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
    }

    function test_lastRegistrationOpensSeedReveal() public {
        DataMarket market = create(3, 1);
        registerAll(market);
        assertEq(uint256(market.phase()), uint256(DataMarket.Phase.SeedReveal), "phase");
        assertEq(market.revealDeadline(), block.timestamp + REVEAL_WINDOW, "reveal deadline");
    }

    function test_revealChecksTheCommitment() public {
        DataMarket market = create(2, 1);
        registerAll(market);
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.SeedMismatch.selector, trainerAt(0)));
        market.reveal(seedOf(1)); // another trainer's seed
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotRegistered.selector, stranger));
        market.reveal(seedOf(0));
        vm.prank(trainerAt(0));
        market.reveal(seedOf(0));
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.AlreadyRevealed.selector, trainerAt(0)));
        market.reveal(seedOf(0));
    }

    function test_splitSeedIsTheHashOfAllRevealedSeeds() public {
        DataMarket market = start(3, 1);
        assertEq(uint256(market.phase()), uint256(DataMarket.Phase.Training), "phase");
        bytes32 xored = seedOf(0) ^ seedOf(1) ^ seedOf(2);
        assertEq(market.splitSeed(), keccak256(abi.encode(block.chainid, address(market), xored)), "split seed");
        assertEq(market.activeMask(), 7, "everyone active");
    }

    function test_trainerWhoDoesNotRevealIsExcluded() public {
        DataMarket market = create(3, 1);
        registerAll(market);
        vm.prank(trainerAt(0));
        market.reveal(seedOf(0));
        vm.prank(trainerAt(2));
        market.reveal(seedOf(2));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.RevealStillOpen.selector, market.revealDeadline()));
        market.closeReveal();
        vm.warp(block.timestamp + REVEAL_WINDOW + 1);
        vm.prank(stranger);
        market.closeReveal();
        assertEq(market.activeMask(), 5, "trainer 1 excluded");
        assertEq(market.splitSeed(), keccak256(abi.encode(block.chainid, address(market), seedOf(0) ^ seedOf(2))), "seed");

        uint32 round = openRound(market);
        vm.prank(trainerAt(1));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotActive.selector, trainerAt(1)));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(1)));
        // the two active trainers submitting is everyone: the round can close early
        submitMask(market, round, 5);
        finalize(market, round, 5);
        vm.prank(aggregator);
        int256[] memory c = new int256[](3);
        c[0] = 1;
        c[2] = 1;
        market.settle(9500, c, "");
        assertEq(market.owed(trainerAt(1)), 0, "excluded trainer earns nothing");
        assertEq(market.owed(trainerAt(0)), RP + POOL_HIGH / 2, "trainer 0");
        withdrawAll(market);
    }

    function test_lateRevealIsRejected() public {
        DataMarket market = create(2, 1);
        registerAll(market);
        uint64 deadline = market.revealDeadline();
        vm.warp(deadline + 1);
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.RevealClosed.selector, deadline));
        market.reveal(seedOf(0));
    }

    function test_noRevealCancelsAndRefunds() public {
        DataMarket market = create(2, 1);
        registerAll(market);
        vm.warp(block.timestamp + REVEAL_WINDOW + 1);
        market.closeReveal();
        assertEq(uint256(market.phase()), uint256(DataMarket.Phase.Cancelled), "phase");
        assertEq(market.owed(owner), required(2, 1), "owner refunded");
        withdrawAll(market);
    }

    function test_cancelAfterRegistrationDeadline() public {
        DataMarket market = create(3, 1);
        vm.prank(trainerAt(0));
        market.register(bytes32(uint256(1)), bytes32(uint256(2)), bytes32(uint256(3)));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotStalled.selector, market.registrationDeadline()));
        market.cancel();
        vm.warp(block.timestamp + REG_WINDOW + 1);
        vm.prank(stranger);
        market.cancel();
        assertEq(market.owed(owner), required(3, 1), "owner refunded");
        assertEq(market.owed(trainerAt(0)), 0, "trainer owed nothing");
        withdrawAll(market);
    }

    // ------------------------------------------------------------ rounds

    function test_roundRules() public {
        DataMarket market = start(2, 2);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotAggregator.selector, stranger));
        market.openRound(bytes32(uint256(1)), bytes32(uint256(1)));
        uint256 field = market.FIELD();
        vm.prank(aggregator);
        vm.expectRevert(DataMarket.InvalidCommitment.selector);
        market.openRound(bytes32(uint256(1)), bytes32(field));

        uint32 round = openRound(market);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.PreviousRoundNotFinalized.selector, round));
        market.openRound(bytes32(uint256(1)), bytes32(0));

        vm.startPrank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.RoundNotOpen.selector, round + 1));
        market.submit(round + 1, bytes32(uint256(1)), bytes32(uint256(1)));
        vm.expectRevert(DataMarket.InvalidCid.selector);
        market.submit(round, bytes32(0), bytes32(uint256(1)));
        vm.expectRevert(DataMarket.InvalidCommitment.selector);
        market.submit(round, bytes32(uint256(1)), bytes32(field));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.AlreadySubmitted.selector, round, trainerAt(0)));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(2)));
        vm.stopPrank();
        assertEq(market.commitmentOf(round, 0), bytes32(uint256(1)), "first commitment kept");

        uint64 deadline = market.getRound(round).deadline;
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.RoundStillOpen.selector, round, deadline));
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(1)), 1, "");

        vm.warp(deadline + 1);
        vm.prank(trainerAt(1));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.SubmissionDeadlinePassed.selector, round, deadline));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(1)));

        vm.startPrank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.MaskIncludesMissingSubmission.selector, round, 1));
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(1)), 3, "");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.MaskIncludesMissingSubmission.selector, round, 2));
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(1)), 5, "");
        market.finalizeRound(round, bytes32(uint256(9)), bytes32(uint256(99)), 1, "");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.RoundNotOpen.selector, round));
        market.finalizeRound(round, bytes32(uint256(9)), bytes32(uint256(99)), 1, "");
        vm.stopPrank();
        assertEq(market.modelCommitment(), bytes32(uint256(99)), "next model is the aggregate");
        assertEq(market.submittedMask(round), 1, "submitted mask");
        assertEq(market.benignRounds(0), 1, "benign rounds");
    }

    function test_lateFinalizeIsRejected() public {
        DataMarket market = start(2, 1);
        uint32 round = openRound(market);
        submitMask(market, round, 3);
        uint64 aggregatorDeadline = market.aggregatorDeadline();
        vm.warp(aggregatorDeadline + 1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.AggregatorWindowClosed.selector, aggregatorDeadline));
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(1)), 3, "");
    }

    function test_noRoundsAfterTheLast() public {
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        assertEq(uint256(market.phase()), uint256(DataMarket.Phase.Settlement), "settlement");
        vm.prank(aggregator);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarket.WrongPhase.selector, DataMarket.Phase.Training, DataMarket.Phase.Settlement)
        );
        market.openRound(bytes32(uint256(1)), bytes32(0));
    }

    // ------------------------------------------------------------ settlement

    function test_settlementPaysEquationFive() public {
        DataMarket market = start(4, 2);
        playRound(market, 15, 0x7); // trainer 3 flagged
        playRound(market, 15, 0xB); // trainer 2 flagged
        int256[] memory c = new int256[](4);
        (c[0], c[1], c[2], c[3]) = (3, 1, -2, 0);
        vm.prank(aggregator);
        market.settle(9100, c, "");
        assertEq(market.owed(trainerAt(0)), 0.02 ether + 0.375 ether, "trainer 0");
        assertEq(market.owed(trainerAt(1)), 0.02 ether + 0.125 ether, "trainer 1");
        assertEq(market.owed(trainerAt(2)), 0.01 ether, "trainer 2: round 1 only");
        assertEq(market.owed(trainerAt(3)), 0.01 ether, "trainer 3: round 2 only");
        assertEq(market.owed(aggregator), FEE, "fee");
        assertEq(market.owed(owner), 0.02 ether, "refund of the unused escrow");
        assertEq(market.finalAccuracyBps(), 9100, "accuracy");
        assertEq(market.undistributed(), 0, "all credited");
        withdrawAll(market);
    }

    function test_accuracyBelowEveryThresholdPaysNoPool() public {
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        int256[] memory c = new int256[](2);
        (c[0], c[1]) = (1, 1);
        vm.prank(aggregator);
        market.settle(7999, c, "");
        assertEq(market.owed(trainerAt(0)), RP, "participation only");
        assertEq(market.owed(owner), required(2, 1) - 2 * RP - FEE, "pool refunded");
    }

    function test_settlementRejectsBadClaims() public {
        DataMarket market = start(3, 1);
        playRound(market, 7, 3); // trainer 2 flagged in the only round
        int256[] memory c = new int256[](3);
        c[2] = 5;
        vm.startPrank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.ContributionForNeverBenignTrainer.selector, trainerAt(2)));
        market.settle(9000, c, "");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.ContributionsLengthMismatch.selector, 3, 2));
        market.settle(9000, new int256[](2), "");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.InvalidAccuracy.selector, 10001));
        market.settle(10001, new int256[](3), "");
        vm.stopPrank();
    }

    // ------------------------------------------------------------ proof hooks

    function test_roundProofMustMatchTheContractsOwnInstances() public {
        PinnedVerifier rv = new PinnedVerifier();
        DataMarket market = createWith(spec(2, 2, address(rv), address(0)), required(2, 2));
        registerAll(market);
        revealAll(market);
        uint32 round = openRound(market);
        submitMask(market, round, 3);

        uint256[] memory inst = market.roundInstances(round, bytes32(uint256(555)), 3);
        assertEq(inst.length, 8, "L + 6 instances");
        assertEq(inst[0], market.domain(round), "domain");
        assertEq(inst[1], 1, "round number");
        assertEq(inst[2], uint256(commitmentOf(round, 0)), "trainer 0 commitment");
        assertEq(inst[3], uint256(commitmentOf(round, 1)), "trainer 1 commitment");
        assertEq(inst[4], 42, "model commitment");
        assertEq(inst[5], 555, "aggregate commitment");
        assertEq(inst[6], 3, "mask");
        assertEq(inst[7], 0, "no previous mask in round 1");
        rv.pin(inst);

        vm.startPrank(aggregator);
        // a forged mask (drops honest trainer 1) and a different aggregate are both rejected
        vm.expectRevert(DataMarket.ProofRejected.selector);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(555)), 1, hex"01");
        vm.expectRevert(DataMarket.ProofRejected.selector);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(556)), 3, hex"01");
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(555)), 3, hex"01");
        vm.stopPrank();
        assertTrue(market.getRound(round).verified, "verified");

        // the round-1 proof replayed for round 2 fails: domain and commitments differ
        round = openRound(market);
        submitMask(market, round, 3);
        vm.prank(aggregator);
        vm.expectRevert(DataMarket.ProofRejected.selector);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(555)), 3, hex"01");
        inst = market.roundInstances(round, bytes32(uint256(777)), 3);
        assertEq(inst[1], 2, "round number");
        assertEq(inst[4], 555, "round 2 starts from the round-1 aggregate");
        assertEq(inst[7], 3, "round 1's benign mask");
    }

    function test_settlementProofBindsAccuracyAndContributions() public {
        PinnedVerifier sv = new PinnedVerifier();
        DataMarket market = createWith(spec(2, 1, address(0), address(sv)), required(2, 1));
        registerAll(market);
        revealAll(market);
        playRound(market, 3, 3);
        int256[] memory c = new int256[](2);
        (c[0], c[1]) = (7, -3);
        uint256[] memory inst = market.settlementInstances(8500, c);
        assertEq(inst[0], market.domain(type(uint32).max), "domain");
        assertEq(inst[2], 1001, "final model commitment");
        assertEq(inst[3], uint256(market.rlooSeed()) % market.FIELD(), "rloo seed");
        assertEq(inst[4], 8500, "accuracy");
        assertEq(inst[5], 3, "final round's benign mask");
        assertEq(inst[6], uint256(commitmentOf(1, 0)), "final round's commitment of trainer 0");
        assertEq(inst[9], market.FIELD() - 3, "negative contribution as a field element");
        sv.pin(inst);

        vm.startPrank(aggregator);
        vm.expectRevert(DataMarket.ProofRejected.selector);
        market.settle(9500, c, hex"01"); // forged accuracy
        (c[0], c[1]) = (3, 1);
        vm.expectRevert(DataMarket.ProofRejected.selector);
        market.settle(8500, c, hex"01"); // forged contributions
        (c[0], c[1]) = (7, -3);
        market.settle(8500, c, hex"01");
        vm.stopPrank();
        assertEq(market.owed(trainerAt(0)), RP + POOL_LOW, "all of the pool to the only positive contributor");
    }

    function test_proofFromAnotherMarketIsRejected() public {
        PinnedVerifier rv = new PinnedVerifier();
        DataMarket a = createWith(spec(2, 1, address(rv), address(0)), required(2, 1));
        registerAll(a);
        revealAll(a);
        DataMarket b = createWith(spec(2, 1, address(rv), address(0)), required(2, 1));
        registerAll(b);
        revealAll(b);
        openRound(a);
        openRound(b);
        submitMask(a, 1, 3);
        submitMask(b, 1, 3); // same commitments in both markets
        rv.pin(a.roundInstances(1, bytes32(uint256(5)), 3));
        vm.prank(aggregator);
        vm.expectRevert(DataMarket.ProofRejected.selector);
        b.finalizeRound(1, bytes32(uint256(1)), bytes32(uint256(5)), 3, hex"01");
        vm.prank(aggregator);
        a.finalizeRound(1, bytes32(uint256(1)), bytes32(uint256(5)), 3, hex"01");
    }

    function test_unverifiedMarketSaysSo() public {
        DataMarket market = start(2, 1);
        assertTrue(!market.isVerified(), "no verifiers");
        playRound(market, 3, 3);
        assertTrue(!market.getRound(1).verified, "round unverified");
    }

    // ------------------------------------------------------------ abort paths

    function test_aggregatorThatNeverOpensIsForcedOut() public {
        DataMarket market = start(3, 2);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotStalled.selector, market.aggregatorDeadline()));
        market.forceSettle();
        vm.warp(market.aggregatorDeadline() + 1);
        vm.prank(stranger);
        market.forceSettle();
        assertEq(uint256(market.phase()), uint256(DataMarket.Phase.Aborted), "aborted");
        assertEq(market.owed(owner), required(3, 2), "everything back to the owner");
        withdrawAll(market);
    }

    function test_aggregatorStallingMidRoundPaysBenignRoundsOnly() public {
        DataMarket market = start(3, 3);
        playRound(market, 7, 0x3); // trainer 2 flagged
        uint32 round = openRound(market);
        submitMask(market, round, 7); // never finalized
        vm.warp(market.aggregatorDeadline() + 1);
        market.forceSettle();
        assertEq(market.owed(trainerAt(0)), RP, "trainer 0: one benign round");
        assertEq(market.owed(trainerAt(2)), 0, "flagged trainer: nothing");
        assertEq(market.owed(aggregator), 0, "no fee for a stalled aggregator");
        assertEq(market.owed(owner), required(3, 3) - 2 * RP, "the rest to the owner");
        withdrawAll(market);
    }

    function test_aggregatorStallingAtSettlementIsForcedOut() public {
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        uint64 aggregatorDeadline = market.aggregatorDeadline();
        vm.warp(aggregatorDeadline + 1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.AggregatorWindowClosed.selector, aggregatorDeadline));
        market.settle(9000, new int256[](2), "");
        market.forceSettle();
        assertEq(market.owed(trainerAt(1)), RP, "participation");
        withdrawAll(market);
    }

    function test_trainersStallingStillEndsTheMarket() public {
        DataMarket market = start(3, 2);
        playRound(market, 0, 0); // nobody submits: finalized empty after the deadline
        playRound(market, 1, 1); // only trainer 0
        vm.prank(aggregator);
        int256[] memory c = new int256[](3);
        c[0] = 10;
        market.settle(9000, c, "");
        assertEq(market.owed(trainerAt(0)), RP + POOL_HIGH, "the only contributor");
        assertEq(market.owed(trainerAt(1)), 0, "stalled trainer");
        withdrawAll(market);
    }

    // ------------------------------------------------------------ payments

    function test_withdrawIsPullOnlyAndNotReentrant() public {
        DataMarket market = create(2, 1);
        ReentrantTrainer evil = new ReentrantTrainer();
        evil.join(market, bytes32(uint256(1)), market.seedCommitmentFor(address(evil), seedOf(9)));
        bytes32 commitment = market.seedCommitmentFor(trainerAt(0), seedOf(0));
        vm.prank(trainerAt(0));
        market.register(bytes32(uint256(2)), commitment, bytes32(uint256(1)));
        evil.reveal(seedOf(9));
        vm.prank(trainerAt(0));
        market.reveal(seedOf(0));
        uint32 round = openRound(market);
        evil.submit(round, bytes32(uint256(3)));
        vm.prank(trainerAt(0));
        market.submit(round, bytes32(uint256(4)), bytes32(uint256(4)));
        finalize(market, round, 3);
        int256[] memory c = new int256[](2);
        c[0] = 1;
        vm.prank(aggregator);
        market.settle(9000, c, "");
        uint256 owedBefore = market.owed(address(evil));
        vm.expectRevert(); // the re-entrant withdraw makes the transfer fail
        evil.withdraw();
        assertEq(market.owed(address(evil)), owedBefore, "nothing lost");

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NothingToWithdraw.selector, stranger));
        market.withdraw();
        vm.prank(trainerAt(0));
        market.withdraw();
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NothingToWithdraw.selector, trainerAt(0)));
        market.withdraw();
    }

    // ------------------------------------------------------------ access control (fuzzed callers)

    function testFuzz_onlyTheAggregatorRunsRounds(address caller) public {
        vm.assume(caller != aggregator);
        DataMarket market = start(2, 1);
        vm.startPrank(caller);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotAggregator.selector, caller));
        market.openRound(bytes32(uint256(1)), bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotAggregator.selector, caller));
        market.finalizeRound(1, bytes32(uint256(1)), bytes32(uint256(1)), 0, "");
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotAggregator.selector, caller));
        market.settle(0, new int256[](2), "");
        vm.stopPrank();
    }

    function testFuzz_onlyActiveTrainersSubmit(address caller) public {
        vm.assume(caller != trainerAt(0) && caller != trainerAt(1));
        DataMarket market = start(2, 1);
        uint32 round = openRound(market);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NotRegistered.selector, caller));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(1)));
    }

    function testFuzz_nobodyWithdrawsWhatIsNotTheirs(address caller) public {
        vm.assume(caller != owner && caller != aggregator && caller != trainerAt(0) && caller != trainerAt(1));
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        vm.prank(aggregator);
        market.settle(9000, new int256[](2), "");
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(DataMarket.NothingToWithdraw.selector, caller));
        market.withdraw();
    }
}
