// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {DataMarket} from "../src/DataMarket.sol";
import {EzklCircuitVerifier} from "../src/EzklCircuitVerifier.sol";
import {EzklSettlementVerifier} from "../src/EzklSettlementVerifier.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {IMarketFactory} from "../src/IMarketFactory.sol";
import {IVerifierFactory} from "../src/IVerifierFactory.sol";
import {IProofVerifier} from "../src/IProofVerifier.sol";
import {MarketFactory} from "../src/MarketFactory.sol";
import {VerifierFactory} from "../src/VerifierFactory.sol";
import {
    AllowedVerifier, MarketFixture, PinnedVerifier, ReentrantTrainer, pinSettlement, pinThrough
} from "./utils/MarketFixture.sol";

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
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Registration), "phase");
    }

    function test_marketCannotBeInitializedTwice() public {
        DataMarket market = create(2, 1);
        IDataMarket.Spec memory s = spec(2, 1, address(0), address(0));
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        market.initialize(stranger, s);
        DataMarket impl = DataMarket(factory.implementation());
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        impl.initialize(stranger, s);
    }

    function test_depositMustCoverTheLargestPayout() public {
        IDataMarket.Spec memory s = spec(4, 3, address(0), address(0));
        uint256 need = 4 * 3 * RP + POOL_HIGH + FEE;
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.InsufficientDeposit.selector, need, need - 1));
        factory.createMarket{value: need - 1}(s);
    }

    function _refused(IDataMarket.Spec memory s, bytes memory error) private {
        vm.prank(owner);
        vm.expectRevert(error);
        factory.createMarket{value: 100 ether}(s);
    }

    function test_specIsValidated() public {
        _refused(spec(129, 1, address(0), address(0)), abi.encodeWithSelector(IDataMarket.InvalidTrainerCount.selector, 129));
        _refused(spec(2, 1001, address(0), address(0)), abi.encodeWithSelector(IDataMarket.InvalidRoundCount.selector, 1001));

        IDataMarket.Spec memory s = spec(2, 1, address(0), address(0));
        s.accuracyThresholds[1] = 8000; // not ascending
        _refused(s, abi.encodeWithSelector(IDataMarket.InvalidThreshold.selector, 1, 8000));

        s = spec(2, 1, address(0), address(0));
        s.rewardPools[1] = POOL_LOW - 1; // a higher accuracy would pay less
        _refused(s, abi.encodeWithSelector(IDataMarket.DecreasingRewardPool.selector, 1));

        s = spec(2, 1, address(0), address(0));
        s.registrationDeadline = uint64(block.timestamp);
        _refused(s, abi.encodeWithSelector(IDataMarket.InvalidRegistrationDeadline.selector, s.registrationDeadline));

        s = spec(2, 1, address(0), address(0));
        s.dataCommitment = bytes32(market_FIELD());
        _refused(s, abi.encodeWithSelector(IDataMarket.InvalidDataCommitment.selector));

        s = spec(2, 1, address(0), address(0));
        s.trainerBond = uint256(type(uint96).max) + 1;
        _refused(s, abi.encodeWithSelector(IDataMarket.InvalidBond.selector, s.trainerBond));
    }

    function market_FIELD() private view returns (uint256) {
        return DataMarket(factory.implementation()).FIELD();
    }

    /// Every window and deadline is bounded: an owner cannot make the forced exits unreachable.
    function test_unboundedWindowsAreRefused() public {
        IDataMarket.Spec memory s = spec(2, 1, address(0), address(0));
        s.aggregatorWindow = type(uint64).max; // the last reveal would overflow and lock the deposit
        _refused(s, abi.encodeWithSelector(IDataMarket.InvalidWindow.selector, REVEAL_WINDOW, ROUND, type(uint64).max));
        s = spec(2, 1, address(0), address(0));
        s.roundDuration = 1e12; // finite, and earned rewards frozen for millennia
        _refused(s, abi.encodeWithSelector(IDataMarket.InvalidWindow.selector, REVEAL_WINDOW, 1e12, AGG_WINDOW));
        s = spec(2, 1, address(0), address(0));
        s.revealWindow = 0;
        _refused(s, abi.encodeWithSelector(IDataMarket.InvalidWindow.selector, 0, ROUND, AGG_WINDOW));
        s = spec(2, 1, address(0), address(0));
        s.registrationDeadline = uint64(block.timestamp) + 91 days;
        _refused(s, abi.encodeWithSelector(IDataMarket.InvalidRegistrationDeadline.selector, s.registrationDeadline));

        // at the bounds a market opens, and its last deadline is reachable
        s = spec(2, 1, address(0), address(0));
        (s.revealWindow, s.roundDuration, s.aggregatorWindow) = (30 days, 30 days, 30 days);
        s.registrationDeadline = uint64(block.timestamp) + 90 days;
        DataMarket market = createWith(s, required(2, 1));
        registerAll(market);
        revealAll(market);
        vm.warp(market.aggregatorDeadline() + 1);
        market.forceSettle();
        withdrawAll(market);
    }

    // ------------------------------------------------------------ registration and seeds

    function test_registrationRules() public {
        DataMarket market = create(2, 1);
        bytes32 c = market.seedCommitmentFor(owner, seedOf(0));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.PartyCannotTrain.selector, owner));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.PartyCannotTrain.selector, aggregator));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));

        vm.startPrank(trainerAt(0));
        vm.expectRevert(IDataMarket.InvalidEncryptionKey.selector);
        market.register(bytes32(0), c, bytes32(uint256(1)));
        vm.expectRevert(IDataMarket.InvalidSeedCommitment.selector);
        market.register(bytes32(uint256(1)), bytes32(0), bytes32(uint256(1)));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AlreadyRegistered.selector, trainerAt(0)));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
        vm.stopPrank();

        uint64 registrationDeadline = market.registrationDeadline();
        vm.warp(block.timestamp + REG_WINDOW + 1);
        vm.prank(trainerAt(1));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.RegistrationClosed.selector, registrationDeadline));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
    }

    function test_lastRegistrationOpensSeedReveal() public {
        DataMarket market = create(3, 1);
        registerAll(market);
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.SeedReveal), "phase");
        assertEq(market.revealDeadline(), block.timestamp + REVEAL_WINDOW, "reveal deadline");
    }

    function test_revealChecksTheCommitment() public {
        DataMarket market = create(2, 1);
        registerAll(market);
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.SeedMismatch.selector, trainerAt(0)));
        market.reveal(seedOf(1)); // another trainer's seed
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotRegistered.selector, stranger));
        market.reveal(seedOf(0));
        vm.prank(trainerAt(0));
        market.reveal(seedOf(0));
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AlreadyRevealed.selector, trainerAt(0)));
        market.reveal(seedOf(0));
    }

    /// The split seed mixes the revealed seeds with the hash of the block that ended the reveal,
    /// which no revealer knows when it decides to reveal or withhold.
    function test_splitSeedIsFixedByTheRevealedSeedsAndALaterBlockHash() public {
        DataMarket market = start(3, 1);
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Training), "phase");
        assertEq(market.activeMask(), 7, "everyone active");
        uint64 seedBlock = market.seedBlock();
        assertEq(seedBlock, block.number, "the block of the last reveal");
        assertEq(market.splitSeed(), bytes32(0), "not known in the reveal's own block");
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.SplitSeedNotYet.selector, seedBlock));
        market.fixSplitSeed();

        vm.roll(block.number + 3);
        vm.prank(stranger);
        market.fixSplitSeed();
        bytes32 xored = seedOf(0) ^ seedOf(1) ^ seedOf(2);
        assertEq(
            market.splitSeed(),
            keccak256(abi.encode(block.chainid, address(market), xored, blockhash(seedBlock))),
            "split seed"
        );
        vm.expectRevert(IDataMarket.SplitSeedAlreadyFixed.selector);
        market.fixSplitSeed();
    }

    function test_aSplitSeedLeftUnfixedPast256BlocksEndsTheMarket() public {
        DataMarket market = start(2, 1);
        uint64 seedBlock = market.seedBlock();
        vm.roll(block.number + 300);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.SplitSeedExpired.selector, seedBlock));
        market.openRound(bytes32(uint256(1)), bytes32(uint256(1)));
        vm.warp(market.aggregatorDeadline() + 1);
        market.forceSettle(); // nothing was earned: everything back to the owner
        assertEq(market.owed(owner), required(2, 1), "owner refunded");
        withdrawAll(market);
    }

    function test_trainerWhoDoesNotRevealIsExcluded() public {
        DataMarket market = create(3, 1);
        registerAll(market);
        vm.prank(trainerAt(0));
        market.reveal(seedOf(0));
        vm.prank(trainerAt(2));
        market.reveal(seedOf(2));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.RevealStillOpen.selector, market.revealDeadline()));
        market.closeReveal();
        vm.warp(block.timestamp + REVEAL_WINDOW + 1);
        vm.prank(stranger);
        market.closeReveal();
        assertEq(market.activeMask(), 5, "trainer 1 excluded");

        uint32 round = openRound(market);
        bytes32 anchor = blockhash(market.seedBlock());
        assertEq(market.splitSeed(), keccak256(abi.encode(block.chainid, address(market), seedOf(0) ^ seedOf(2), anchor)), "seed");
        vm.prank(trainerAt(1));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotActive.selector, trainerAt(1)));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(1)));
        // the two active trainers submitting is everyone: the round can close early
        submitMask(market, round, 5);
        finalize(market, round, 5);
        vm.prank(aggregator);
        int256[] memory c = new int256[](3);
        c[0] = 1;
        c[2] = 1;
        market.settle(9500, c);
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
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.RevealClosed.selector, deadline));
        market.reveal(seedOf(0));
    }

    function test_noRevealCancelsAndRefunds() public {
        DataMarket market = create(2, 1);
        registerAll(market);
        vm.warp(block.timestamp + REVEAL_WINDOW + 1);
        market.closeReveal();
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Cancelled), "phase");
        assertEq(market.owed(owner), required(2, 1), "owner refunded");
        withdrawAll(market);
    }

    function test_cancelAfterRegistrationDeadline() public {
        DataMarket market = create(3, 1);
        vm.prank(trainerAt(0));
        market.register(bytes32(uint256(1)), bytes32(uint256(2)), bytes32(uint256(3)));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotStalled.selector, market.registrationDeadline()));
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
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotAggregator.selector, stranger));
        market.openRound(bytes32(uint256(1)), bytes32(uint256(1)));
        uint256 field = market.FIELD();
        vm.roll(block.number + 1);
        vm.prank(aggregator);
        vm.expectRevert(IDataMarket.InvalidCommitment.selector);
        market.openRound(bytes32(uint256(1)), bytes32(field));

        uint32 round = openRound(market);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.PreviousRoundNotFinalized.selector, round));
        market.openRound(bytes32(uint256(1)), bytes32(0));

        vm.startPrank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.RoundNotOpen.selector, round + 1));
        market.submit(round + 1, bytes32(uint256(1)), bytes32(uint256(1)));
        vm.expectRevert(IDataMarket.InvalidCid.selector);
        market.submit(round, bytes32(0), bytes32(uint256(1)));
        vm.expectRevert(IDataMarket.InvalidCommitment.selector);
        market.submit(round, bytes32(uint256(1)), bytes32(field));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AlreadySubmitted.selector, round, trainerAt(0)));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(2)));
        vm.stopPrank();
        assertEq(market.commitmentOf(round, 0), bytes32(uint256(1)), "first commitment kept");

        uint64 deadline = market.getRound(round).deadline;
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.RoundStillOpen.selector, round, deadline));
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(1)), 1, "");

        vm.warp(deadline + 1);
        vm.prank(trainerAt(1));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.SubmissionDeadlinePassed.selector, round, deadline));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(1)));

        vm.startPrank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.MaskIncludesMissingSubmission.selector, round, 1));
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(1)), 3, "");
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.MaskIncludesMissingSubmission.selector, round, 2));
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(1)), 5, "");
        market.finalizeRound(round, bytes32(uint256(9)), bytes32(uint256(99)), 1, "");
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.RoundNotOpen.selector, round));
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
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AggregatorWindowClosed.selector, aggregatorDeadline));
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(1)), 3, "");
    }

    function test_noRoundsAfterTheLast() public {
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Settlement), "settlement");
        vm.prank(aggregator);
        vm.expectRevert(
            abi.encodeWithSelector(IDataMarket.WrongPhase.selector, IDataMarket.Phase.Training, IDataMarket.Phase.Settlement)
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
        market.settle(9100, c);
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
        market.settle(7999, c);
        assertEq(market.owed(trainerAt(0)), RP, "participation only");
        assertEq(market.owed(owner), required(2, 1) - 2 * RP - FEE, "pool refunded");
    }

    function test_settlementRejectsBadClaims() public {
        DataMarket market = start(3, 1);
        playRound(market, 7, 3); // trainer 2 flagged in the only round
        int256[] memory c = new int256[](3);
        c[2] = 5;
        vm.startPrank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionForNeverBenignTrainer.selector, trainerAt(2)));
        market.settle(9000, c);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionsLengthMismatch.selector, 3, 2));
        market.settle(9000, new int256[](2));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.InvalidAccuracy.selector, 10001));
        market.settle(10001, new int256[](3));
        vm.stopPrank();
    }

    // ------------------------------------------------------------ proof hooks

    function _roundFree() private pure returns (uint256[] memory free) {
        free = new uint256[](1); // h(hints): every slot present
        free[0] = 11;
    }

    function test_roundProofMustMatchTheContractsOwnInstances() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        (DataMarket market, EzklCircuitVerifier rv, uint32 round) = provenRoundOpen(halo2, 2, 2);

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
        bytes memory proof = pinThrough(halo2, rv, inst, _roundFree());

        vm.startPrank(aggregator);
        // a forged mask (drops honest trainer 1) and a different aggregate are both rejected
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(555)), 1, proof);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(556)), 3, proof);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(555)), 3, proof);
        vm.stopPrank();
        assertTrue(market.getRound(round).verified, "verified");

        // the round-1 proof replayed for round 2 fails: domain and commitments differ
        round = openRound(market);
        submitMask(market, round, 3);
        vm.prank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(555)), 3, proof);
        inst = market.roundInstances(round, bytes32(uint256(777)), 3);
        assertEq(inst[1], 2, "round number");
        assertEq(inst[4], 555, "round 2 starts from the round-1 aggregate");
        assertEq(inst[7], 3, "round 1's benign mask");
    }

    function test_aFreeValueOutsideTheFieldIsRefused() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        (DataMarket market, EzklCircuitVerifier rv, uint32 round) = provenRoundOpen(halo2, 2, 1);
        uint256[] memory inst = market.roundInstances(round, bytes32(uint256(555)), 3);
        pinThrough(halo2, rv, inst, _roundFree());
        uint256[] memory aliased = _roundFree();
        aliased[0] += market.FIELD(); // the same element to a verifier that reduces modulo the field
        (bool ok,) = rv.circuitInstancesFor(inst, aliased, hex"01");
        assertTrue(!ok, "a second encoding does not fit the circuit");
        vm.prank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(555)), 3, abi.encode(hex"01", aliased));
    }

    /// A settlement market over chunks (c0, c1) of 20 test rows, ready to settle with 17 correct.
    /// A 2-trainer, 2-round market with proven rounds and settlement, every round finalized.
    function _settlementMarket(PinnedVerifier halo2) private returns (DataMarket market, EzklCircuitVerifier sv) {
        return _settlementMarket(halo2, 20, 1, 3);
    }

    /// As above, each round's test rows proven in `parts` proofs of `samples` rows each, over the
    /// owner's `k` chunks 101, 102, ...
    function _settlementMarket(IProofVerifier halo2, uint32 samples, uint32 parts, uint256 k)
        private
        returns (DataMarket market, EzklCircuitVerifier sv)
    {
        sv = EzklCircuitVerifier(verifiers.deploySettlementVerifier(halo2, 2, samples, parts));
        PinnedVerifier rounds = new PinnedVerifier();
        address rv = verifiers.deployRoundVerifier(rounds, 2);
        IDataMarket.Spec memory s = spec(2, 2, rv, address(sv));
        uint256[] memory chunks = new uint256[](k);
        for (uint256 j = 0; j < k; ++j) {
            chunks[j] = 101 + j;
        }
        s.dataCommitment = bytes32(uint256(keccak256(abi.encode(chunks))) % market_FIELD());
        market = createWith(s, required(2, 2));
        registerAll(market);
        revealAll(market);
        for (uint32 r = 1; r <= 2; ++r) {
            uint32 round = openRound(market);
            submitMask(market, round, 3);
            uint128 kept = r == 1 ? 3 : 1; // trainer 1 flagged in round 2
            bytes32 agg = bytes32(uint256(1000 + r));
            bytes memory roundProof =
                pinThrough(rounds, EzklCircuitVerifier(rv), market.roundInstances(round, agg, kept), _roundFree());
            vm.prank(aggregator);
            market.finalizeRound(round, keccak256(abi.encode("agg", r)), agg, kept, roundProof);
        }
    }

    function _settlementFree(DataMarket market) private view returns (uint256[] memory free) {
        free = new uint256[](7); // [correct, splitSeed, h(public), K, chunk hashes]
        (free[0], free[1], free[2], free[3]) = (17, uint256(market.splitSeed()), 13, 3);
        (free[4], free[5], free[6]) = (101, 102, 103);
    }

    function _contributions(int256 a, int256 b) private pure returns (int256[] memory c) {
        c = new int256[](2);
        (c[0], c[1]) = (a, b);
    }

    function test_contributionProofBindsItsRound() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        (DataMarket market, EzklCircuitVerifier sv) = _settlementMarket(halo2);
        int256[] memory c = _contributions(7, -3);
        uint256[] memory inst = market.contributionInstances(1, 8500, c);
        assertEq(inst[0], market.domain(type(uint32).max - 1), "domain of round 1's contributions");
        assertEq(inst[2], 1002, "final model commitment");
        assertEq(inst[3], uint256(keccak256(abi.encode(market.rlooSeed(), uint32(1)))) % market.FIELD(), "seed");
        assertEq(inst[4], 8500, "accuracy");
        assertEq(inst[5], 3, "round 1's benign mask");
        assertEq(inst[6], 1, "round");
        assertEq(inst[7], uint256(commitmentOf(1, 0)), "round 1's commitment of trainer 0");
        assertEq(inst[10], market.FIELD() - 3, "negative contribution as a field element");
        assertEq(market.contributionInstances(2, 8500, c)[5], 1, "round 2's benign mask");

        // one test chunk per round, consecutive from the split seed's
        uint256 first = uint256(market.splitSeed()) % 3;
        (, uint256[] memory one) = sv.circuitInstancesFor(inst, _settlementFree(market), hex"01");
        (, uint256[] memory two) = sv.circuitInstancesFor(market.contributionInstances(2, 8500, c), _settlementFree(market), hex"01");
        assertEq(one[3], 101 + first, "round 1's test chunk");
        assertEq(two[3], 101 + (first + 1) % 3, "round 2's test chunk");
        assertEq(one.length, 2 * 2 + 2 * 2 + 11, "L^2 + 2L + 11 circuit instances");
        assertEq(one[one.length - 1], 1, "the final model unpacked");

        bytes memory proof = pinSettlement(halo2, sv, inst, _settlementFree(market));
        vm.startPrank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.proveContributions(1, 9500, c, proof); // forged accuracy
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.proveContributions(1, 8500, _contributions(3, 1), proof); // forged contributions
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionsOutOfOrder.selector, 2, 1));
        market.proveContributions(2, 8500, c, proof); // round 2 first
        market.proveContributions(1, 8500, c, proof);
        // round 1's proof does not prove round 2: other commitments, mask, seed, chunk and domain
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.proveContributions(2, 8500, c, proof);
        vm.stopPrank();
        assertEq(market.provenRounds(), 1, "round 1 proven");
    }

    function test_provenSettlementPaysTheSumOverEveryRound() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        (DataMarket market, EzklCircuitVerifier sv) = _settlementMarket(halo2);
        int256[] memory one = _contributions(7, -3);
        int256[] memory two = _contributions(2, 0);
        vm.startPrank(aggregator);
        market.proveContributions(1, 8500, one, pinSettlement(halo2, sv, market.contributionInstances(1, 8500, one), _settlementFree(market)));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionsNotProven.selector, 1, 2));
        market.settle(8500, one); // round 2 left out

        uint256[] memory free = _settlementFree(market);
        free[0] = 18; // 9,000 bps on round 2's chunk
        market.proveContributions(2, 9000, two, pinSettlement(halo2, sv, market.contributionInstances(2, 9000, two), free));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionsOutOfOrder.selector, 3, 3));
        market.proveContributions(3, 9000, two, hex"01");
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AccuracyNotProven.selector, 8750));
        market.settle(9000, _contributions(9, -3));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionNotProven.selector, 0, 9));
        market.settle(8750, one); // round 1's alone
        market.settle(8750, _contributions(9, -3));
        vm.stopPrank();
        assertEq(market.owed(trainerAt(0)), 2 * RP + POOL_LOW, "all of the pool to the only positive contributor");
        assertEq(market.owed(trainerAt(1)), RP, "one benign round");
        withdrawAll(market);
    }

    /// A 2-round market whose settlement proves each round's 20 test rows in two parts of 10, and
    /// `free` for round 1 with contributions (7, -3): 8 + 9 of 20 correct, part 1's (2, -5).
    function _partsMarket(AllowedVerifier halo2)
        private
        returns (DataMarket market, EzklSettlementVerifier sv, uint256[] memory free)
    {
        EzklCircuitVerifier adapter;
        (market, adapter) = _settlementMarket(halo2, 10, 2, 6);
        sv = EzklSettlementVerifier(address(adapter));
        // [correct_0, splitSeed, h(public), K, 6 chunk hashes, part 1: correct_1, C_1,0, C_1,1]
        free = new uint256[](13);
        (free[0], free[1], free[2], free[3]) = (8, uint256(market.splitSeed()), 13, 6);
        for (uint256 j = 0; j < 6; ++j) {
            free[4 + j] = 101 + j;
        }
        (free[10], free[11], free[12]) = (9, 2, market_FIELD() - 5);
    }

    /// Part j scores the j-th chunk of the round's group; part 0's contributions are the market's
    /// less part 1's (EzklSettlementVerifier with parts).
    function test_aRoundsContributionProofInPartsLaysEachPartOut() public {
        (DataMarket market, EzklSettlementVerifier sv, uint256[] memory free) = _partsMarket(new AllowedVerifier());
        assertEq(sv.parts(), 2, "two parts");
        IVerifierFactory.VerifierInfo memory info = verifiers.verifierInfo(address(sv));
        assertEq(info.samples, 10, "a part's rows");
        assertEq(info.chunks, 2, "parts recorded");
        uint256[] memory inst = market.contributionInstances(1, 8500, _contributions(7, -3));
        uint256 group = uint256(market.splitSeed()) % 3;
        (bool ok0, uint256[] memory zero) = sv.circuitInstancesFor(inst, free, hex"01");
        (bool ok1, uint256[] memory one) = sv.partInstancesFor(inst, free, 1);
        assertTrue(ok0 && ok1, "both parts fit");
        assertEq(zero[3], 101 + 2 * group, "part 0: the group's first chunk");
        assertEq(one[3], 102 + 2 * group, "part 1: its second");
        assertEq(zero[5], 8, "part 0's correct count");
        assertEq(one[5], 9, "part 1's");
        assertEq(zero[6], 5, "part 0's contribution: 7 - 2");
        assertEq(zero[7], 2, "and -3 - (-5)");
        assertEq(one[6], 2, "part 1's, as given");
        (bool ok2,) = sv.partInstancesFor(inst, free, 2);
        assertTrue(!ok2, "no third part");
        (, uint256[] memory two) = sv.circuitInstancesFor(market.contributionInstances(2, 8500, _contributions(7, -3)), free, hex"01");
        assertEq(two[3], 101 + 2 * ((group + 1) % 3), "round 2: the next group");
    }

    /// The parts' counts must add up: to the accuracy, within each part's rows, in whole groups,
    /// one proof per part, to the market's contributions.
    function test_aRoundsContributionsProvenInPartsAddUp() public {
        AllowedVerifier halo2 = new AllowedVerifier();
        (DataMarket market, EzklSettlementVerifier sv, uint256[] memory free) = _partsMarket(halo2);
        int256[] memory c = _contributions(7, -3);
        uint256[] memory inst = market.contributionInstances(1, 8500, c);
        (, uint256[] memory zero) = sv.circuitInstancesFor(inst, free, hex"01");
        (, uint256[] memory one) = sv.partInstancesFor(inst, free, 1);
        halo2.allow(zero);
        halo2.allow(one);
        bytes[] memory proofs = new bytes[](2);
        (proofs[0], proofs[1]) = (hex"01", hex"02");
        vm.startPrank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.proveContributions(1, 8000, c, abi.encode(proofs, free)); // 17 of 20 is 8,500 bps
        uint256[] memory over = _copy(free);
        (over[0], over[10]) = (11, 6); // a part's count past its 10 rows, the same sum
        halo2.allow(_partInstances(sv, inst, over, 0)); // as if its proofs verified: the adapter refuses
        halo2.allow(_partInstances(sv, inst, over, 1));
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.proveContributions(1, 8500, c, abi.encode(proofs, over));
        uint256[] memory odd = new uint256[](12); // five chunks make no groups of two
        for (uint256 j = 0; j < 12; ++j) {
            odd[j] = j < 9 ? free[j] : free[j + 1];
        }
        odd[3] = 5;
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.proveContributions(1, 8500, c, abi.encode(proofs, odd));
        bytes[] memory single = new bytes[](1);
        single[0] = hex"01";
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.proveContributions(1, 8500, c, abi.encode(single, free)); // one part of two
        // other contributions move part 0's, whose proof then fails
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.proveContributions(1, 8500, _contributions(8, -3), abi.encode(proofs, free));
        market.proveContributions(1, 8500, c, abi.encode(proofs, free));
        vm.stopPrank();
        assertEq(market.provenRounds(), 1, "round 1 proven in two parts");
    }

    /// Part `part`'s instances as the adapter lays them out with its totals left unchecked.
    function _partInstances(EzklSettlementVerifier sv, uint256[] memory inst, uint256[] memory free, uint256 part)
        private
        view
        returns (uint256[] memory c)
    {
        uint256 total = free[0] + free[10];
        uint256[] memory fits = _copy(free);
        (fits[0], fits[10]) = (total / 2, total - total / 2);
        (, c) = sv.partInstancesFor(inst, fits, part);
        c[5] = free[part == 0 ? 0 : 10];
    }

    function _copy(uint256[] memory a) private pure returns (uint256[] memory b) {
        b = new uint256[](a.length);
        for (uint256 i = 0; i < a.length; ++i) {
            b[i] = a[i];
        }
    }

    /// The settlement adapter's bound on parts (its loop over proofs), and none is refused.
    function test_aSettlementVerifiersPartsAreBounded() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        uint32 most = uint32(EzklSettlementVerifier(verifiers.deploySettlementVerifier(halo2, 2, 10, 1)).MAX_PARTS());
        verifiers.deploySettlementVerifier(halo2, 2, 10, most);
        vm.expectRevert(abi.encodeWithSelector(EzklSettlementVerifier.InvalidSettlementShape.selector, 10, most + 1));
        verifiers.deploySettlementVerifier(halo2, 2, 10, most + 1);
        vm.expectRevert(abi.encodeWithSelector(EzklSettlementVerifier.InvalidSettlementShape.selector, 10, 0));
        verifiers.deploySettlementVerifier(halo2, 2, 10, 0);
    }

    /// Each proven round reopens the aggregator's window; an aggregator that stalls between proofs
    /// is forced out, and every wei stays claimable.
    function test_aStallBetweenContributionProofsEndsInForcedSettlement() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        (DataMarket market, EzklCircuitVerifier sv) = _settlementMarket(halo2);
        int256[] memory one = _contributions(7, -3);
        bytes memory proof = pinSettlement(halo2, sv, market.contributionInstances(1, 8500, one), _settlementFree(market));
        vm.warp(market.aggregatorDeadline() - 1);
        vm.prank(aggregator);
        market.proveContributions(1, 8500, one, proof);
        uint64 deadline = market.aggregatorDeadline();
        assertEq(deadline, block.timestamp + market.aggregatorWindow(), "window reopened");
        vm.warp(deadline + 1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AggregatorWindowClosed.selector, deadline));
        market.proveContributions(2, 8500, one, hex"01");
        market.forceSettle();
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Aborted), "forced out");
        withdrawAll(market);
    }

    function test_unprovenMarketsHaveNoContributionProofs() public {
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        vm.prank(aggregator);
        vm.expectRevert(IDataMarket.SettlementNotProven.selector);
        market.proveContributions(1, 9000, _contributions(1, 1), hex"01");
    }

    /// One honest proof cannot prove another contribution vector: (7, 3) and (7, 3 - FIELD) were
    /// the same instances, and the second paid trainer 1 nothing.
    function test_aContributionAliasedByTheFieldIsRefused() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        (DataMarket market, EzklCircuitVerifier sv) = _settlementMarket(halo2);
        int256[] memory c = _contributions(7, 3);
        bytes memory proof = pinSettlement(halo2, sv, market.contributionInstances(1, 8500, c), _settlementFree(market));
        int256 aliased = 3 - int256(market.FIELD());
        c[1] = aliased;
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionOutOfRange.selector, 1, aliased));
        market.contributionInstances(1, 8500, c);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionOutOfRange.selector, 1, aliased));
        market.proveContributions(1, 8500, c, proof);
        int256 tooLarge = market.MAX_CONTRIBUTION() + 1;
        c[1] = tooLarge;
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionOutOfRange.selector, 1, tooLarge));
        market.proveContributions(1, 8500, c, proof);
        c[1] = 3;
        vm.prank(aggregator);
        market.proveContributions(1, 8500, c, proof);
        assertEq(market.provenRounds(), 1, "the honest vector is proven");
    }

    function test_unprovenSettlementAlsoBoundsContributions() public {
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        int256[] memory c = new int256[](2);
        (c[0], c[1]) = (type(int256).min, 1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.ContributionOutOfRange.selector, 0, type(int256).min));
        market.settle(9000, c);
    }

    function test_proofFromAnotherMarketIsRejected() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        address rv = verifiers.deployRoundVerifier(halo2, 2);
        DataMarket a = createWith(spec(2, 1, rv, address(0)), required(2, 1));
        registerAll(a);
        revealAll(a);
        DataMarket b = createWith(spec(2, 1, rv, address(0)), required(2, 1));
        registerAll(b);
        revealAll(b);
        openRound(a);
        openRound(b);
        submitMask(a, 1, 3);
        submitMask(b, 1, 3); // same commitments in both markets
        bytes memory proof = pinThrough(halo2, EzklCircuitVerifier(rv), a.roundInstances(1, bytes32(uint256(5)), 3), _roundFree());
        vm.prank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        b.finalizeRound(1, bytes32(uint256(1)), bytes32(uint256(5)), 3, proof);
        vm.prank(aggregator);
        a.finalizeRound(1, bytes32(uint256(1)), bytes32(uint256(5)), 3, proof);
    }

    /// A market's verifiers are adapters the factory deployed, for its number of trainers: an
    /// owner cannot name a switchable contract that accepts rounds and rejects settlements.
    function test_onlyTheFactorysVerifiersForTheMarketsShapeAreAccepted() public {
        PinnedVerifier halo2 = new PinnedVerifier();
        _refused(
            spec(2, 1, address(halo2), address(0)),
            abi.encodeWithSelector(IMarketFactory.UnknownVerifier.selector, address(halo2), IVerifierFactory.VerifierKind.Round)
        );
        address forThree = verifiers.deployRoundVerifier(halo2, 3);
        _refused(
            spec(2, 1, forThree, address(0)),
            abi.encodeWithSelector(IMarketFactory.VerifierShapeMismatch.selector, forThree, 3, 2)
        );
        address settlement = verifiers.deploySettlementVerifier(halo2, 2, 10, 1);
        _refused(
            spec(2, 1, settlement, address(0)),
            abi.encodeWithSelector(IMarketFactory.UnknownVerifier.selector, settlement, IVerifierFactory.VerifierKind.Round)
        );
        vm.expectRevert(abi.encodeWithSelector(IVerifierFactory.NoVerifierCode.selector, stranger));
        verifiers.deployRoundVerifier(IProofVerifier(stranger), 2);
        assertEq(verifiers.MAX_TRAINERS(), DataMarket(factory.implementation()).MAX_TRAINERS(), "one bound");
        vm.expectRevert(abi.encodeWithSelector(IVerifierFactory.InvalidVerifierShape.selector, 129, 0));
        verifiers.deployRoundVerifier(halo2, 129);
        uint32 tooMany = verifiers.MAX_SETTLEMENT_TRAINERS() + 1;
        vm.expectRevert(abi.encodeWithSelector(IVerifierFactory.InvalidVerifierShape.selector, tooMany, 10));
        verifiers.deploySettlementVerifier(halo2, tooMany, 10, 1);

        address rv = verifiers.deployRoundVerifier(halo2, 2);
        IVerifierFactory.VerifierInfo memory info = verifiers.verifierInfo(rv);
        assertEq(uint256(info.kind), uint256(IVerifierFactory.VerifierKind.Round), "kind");
        assertEq(info.halo2, address(halo2), "the EZKL verifier behind it");
        assertEq(info.halo2CodeHash, address(halo2).codehash, "its code, to compare with a rebuild");
        createWith(spec(2, 1, rv, address(0)), required(2, 1));

        // an adapter of another verifier factory, the same code: unknown to this market factory
        address elsewhere = new VerifierFactory().deployRoundVerifier(halo2, 2);
        _refused(
            spec(2, 1, elsewhere, address(0)),
            abi.encodeWithSelector(IMarketFactory.UnknownVerifier.selector, elsewhere, IVerifierFactory.VerifierKind.Round)
        );
        vm.expectRevert(abi.encodeWithSelector(IMarketFactory.NoVerifierFactory.selector, stranger));
        new MarketFactory(IVerifierFactory(stranger));
    }

    /// forge deploys past EIP-3860 and EIP-170; a chain does not. The factories' creation code and
    /// code must stay within them (MarketFactory carries DataMarket's and SecureAggregation's
    /// creation code, VerifierFactory every adapter's).
    function test_theFactoriesFitTheChainsCodeLimits() public view {
        assertLt(type(MarketFactory).creationCode.length + 32, 49_152, "MarketFactory initcode, with its argument");
        assertLt(type(VerifierFactory).creationCode.length, 49_152, "VerifierFactory initcode");
        assertLt(address(verifiers).code.length, 24_577, "VerifierFactory code");
        assertLt(address(factory).code.length, 24_577, "MarketFactory code");
        assertLt(factory.implementation().code.length, 24_577, "DataMarket code");
    }

    /// A market not made by the factory may name a verifier without code: the call would return
    /// nothing, and the market reports that as a rejected proof, not an empty revert.
    function test_aVerifierWithoutCodeIsAProofRejection() public {
        DataMarket market = DataMarket(Clones.clone(factory.implementation()));
        vm.prank(owner);
        market.initialize{value: required(2, 1)}(owner, spec(2, 1, stranger, address(0)));
        delete trainerAddrs;
        trainerAddrs.push(trainerAt(0));
        trainerAddrs.push(trainerAt(1));
        registerAll(market);
        revealAll(market);
        uint32 round = openRound(market);
        submitMask(market, round, 3);
        vm.prank(aggregator);
        vm.expectRevert(IDataMarket.ProofRejected.selector);
        market.finalizeRound(round, bytes32(uint256(1)), bytes32(uint256(5)), 3, hex"01");
    }

    function test_unverifiedMarketSaysSo() public {
        DataMarket market = start(2, 1);
        assertTrue(market.roundVerifier() == address(0) && market.settlementVerifier() == address(0), "no verifiers");
        playRound(market, 3, 3);
        assertTrue(!market.getRound(1).verified, "round unverified");
    }

    // ------------------------------------------------------------ abort paths

    function test_aggregatorThatNeverOpensIsForcedOut() public {
        DataMarket market = start(3, 2);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotStalled.selector, market.aggregatorDeadline()));
        market.forceSettle();
        vm.warp(market.aggregatorDeadline() + 1);
        vm.prank(stranger);
        market.forceSettle();
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Aborted), "aborted");
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
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.AggregatorWindowClosed.selector, aggregatorDeadline));
        market.settle(9000, new int256[](2));
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
        market.settle(9000, c);
        assertEq(market.owed(trainerAt(0)), RP + POOL_HIGH, "the only contributor");
        assertEq(market.owed(trainerAt(1)), 0, "stalled trainer");
        withdrawAll(market);
    }

    function test_forceSettleNamesThePhaseItCannotEnd() public {
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        vm.prank(aggregator);
        market.settle(9000, new int256[](2));
        vm.warp(block.timestamp + 365 days);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.CannotForceSettle.selector, IDataMarket.Phase.Settled));
        market.forceSettle();
    }

    // ------------------------------------------------------------ trainer bonds

    function _bonded(uint32 l, uint256 bond) private returns (DataMarket market) {
        IDataMarket.Spec memory s = spec(l, 1, address(0), address(0));
        s.trainerBond = bond;
        market = createWith(s, required(l, 1));
    }

    /// Squatters who take every seat and never reveal cost the owner nothing and lose their bonds.
    function test_squattersLoseTheirBondsToTheOwner() public {
        DataMarket market = _bonded(3, 0.1 ether);
        bytes32 c = market.seedCommitmentFor(trainerAt(0), seedOf(0));
        vm.deal(trainerAt(0), 1 ether);
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.WrongBond.selector, 0.1 ether, 0));
        market.register(bytes32(uint256(1)), c, bytes32(uint256(1)));
        registerAll(market);
        assertEq(address(market).balance, required(3, 1) + 0.3 ether, "escrow and bonds held");
        vm.warp(market.revealDeadline() + 1);
        market.closeReveal();
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Cancelled), "nobody revealed");
        assertEq(market.owed(owner), required(3, 1) + 0.3 ether, "escrow back, and the squatters' bonds");
        for (uint256 i = 0; i < 3; ++i) {
            assertEq(market.owed(trainerAt(i)), 0, "a squatter gets nothing back");
        }
        withdrawAll(market);
    }

    function test_aRevealReturnsTheBondAndAMissedOneForfeitsIt() public {
        DataMarket market = _bonded(3, 0.1 ether);
        registerAll(market);
        vm.prank(trainerAt(0));
        market.reveal(seedOf(0));
        assertEq(market.owed(trainerAt(0)), 0.1 ether, "withdrawable once revealed");
        vm.prank(trainerAt(0));
        market.withdraw();
        vm.prank(trainerAt(2));
        market.reveal(seedOf(2));
        vm.warp(market.revealDeadline() + 1);
        market.closeReveal();
        assertEq(market.owed(owner), 0.1 ether, "trainer 1's bond, as training starts");
        assertEq(market.owed(trainerAt(1)), 0, "trainer 1 never revealed");
        assertEq(market.owed(trainerAt(2)), 0.1 ether, "trainer 2's bond");
        playRound(market, 5, 5);
        int256[] memory c = new int256[](3);
        (c[0], c[2]) = (1, 1);
        vm.prank(aggregator);
        market.settle(9500, c);
        assertEq(market.owed(trainerAt(2)), 0.1 ether + RP + POOL_HIGH / 2, "bond and payout");
        assertEq(market.owed(trainerAt(0)), RP + POOL_HIGH / 2, "bond already withdrawn");
        withdrawAll(market);
    }

    function test_aMarketCancelledInRegistrationReturnsEveryBond() public {
        DataMarket market = _bonded(3, 0.1 ether);
        registerOne(market, 0);
        registerOne(market, 1);
        vm.warp(market.registrationDeadline() + 1);
        market.cancel();
        assertEq(market.owed(trainerAt(0)), 0.1 ether, "bond back");
        assertEq(market.owed(trainerAt(1)), 0.1 ether, "bond back");
        assertEq(market.owed(owner), required(3, 1), "escrow back");
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
        market.settle(9000, c);
        uint256 owedBefore = market.owed(address(evil));
        vm.expectRevert(); // the re-entrant withdraw makes the transfer fail
        evil.withdraw();
        assertEq(market.owed(address(evil)), owedBefore, "nothing lost");

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NothingToWithdraw.selector, stranger));
        market.withdraw();
        vm.prank(trainerAt(0));
        market.withdraw();
        vm.prank(trainerAt(0));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NothingToWithdraw.selector, trainerAt(0)));
        market.withdraw();
    }

    // ------------------------------------------------------------ access control (fuzzed callers)

    function testFuzz_onlyTheAggregatorRunsRounds(address caller) public {
        vm.assume(caller != aggregator);
        DataMarket market = start(2, 1);
        vm.startPrank(caller);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotAggregator.selector, caller));
        market.openRound(bytes32(uint256(1)), bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotAggregator.selector, caller));
        market.finalizeRound(1, bytes32(uint256(1)), bytes32(uint256(1)), 0, "");
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotAggregator.selector, caller));
        market.settle(0, new int256[](2));
        vm.stopPrank();
    }

    function testFuzz_onlyActiveTrainersSubmit(address caller) public {
        vm.assume(caller != trainerAt(0) && caller != trainerAt(1));
        DataMarket market = start(2, 1);
        uint32 round = openRound(market);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NotRegistered.selector, caller));
        market.submit(round, bytes32(uint256(1)), bytes32(uint256(1)));
    }

    function testFuzz_nobodyWithdrawsWhatIsNotTheirs(address caller) public {
        vm.assume(caller != owner && caller != aggregator && caller != trainerAt(0) && caller != trainerAt(1));
        DataMarket market = start(2, 1);
        playRound(market, 3, 3);
        vm.prank(aggregator);
        market.settle(9000, new int256[](2));
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(IDataMarket.NothingToWithdraw.selector, caller));
        market.withdraw();
    }
}
