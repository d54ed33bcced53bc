// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IProofVerifier} from "./IProofVerifier.sol";

/// @title One fedmarket data market: escrow, registration, rounds, settlement, pull payments.
/// @notice Follows the proof-of-contribution data market (sources/004, sections IV.A-C): the
/// project owner escrows a reward, L trainers register, each round the aggregator publishes a
/// global model, trainers submit update CIDs with commitments, the aggregator finalizes the round
/// with the benign mask, and at the end settles with the contribution vector. Payouts follow
/// eq. (5): R_i = R_p * benignRounds_i + alpha * C_i^+ / sum_j C_j^+.
/// @dev Deployed only as an EIP-1167 clone by {MarketFactory}, so every market runs the same
/// audited code (sources/004, Remark 3). CIDs are stored as the sha2-256 digest of a CIDv1 with
/// the raw codec; the full CID is `0x01 0x55 0x12 0x20 || digest`.
contract DataMarket is Initializable, ReentrancyGuard {
    enum Phase {
        Registration,
        Training,
        Settlement,
        Settled,
        Cancelled,
        Aborted
    }

    struct Spec {
        bytes32 specCid; // digest of the task spec (model, hyperparameters, data schema)
        bytes32 dataCid; // digest of the owner's validation/test data
        bytes32 dataCommitment; // commitment to the owner's data
        address aggregator;
        bytes32 aggregatorKey; // X25519 public key trainers seal their updates to
        uint32 trainers; // L
        uint32 rounds; // T
        uint64 registrationDeadline; // unix seconds
        uint64 roundDuration; // seconds a round accepts submissions
        uint64 aggregatorWindow; // seconds the aggregator has for each of its steps
        uint256 participationReward; // R_p, paid per benign round
        uint256 aggregatorFee;
        uint16[] accuracyThresholds; // basis points, strictly ascending
        uint256[] rewardPools; // alpha for reaching the threshold at the same index
        address roundVerifier; // zero: rounds are not proven
        address settlementVerifier; // zero: settlement is not proven
    }

    struct Round {
        bytes32 modelCid;
        bytes32 modelCommitment;
        uint64 deadline;
        bool finalized;
        bool verified;
        uint256 submittedMask;
        uint256 benignMask;
        bytes32 aggregateCid;
        bytes32 aggregateCommitment;
    }

    struct Submission {
        bytes32 cid;
        bytes32 commitment;
    }

    uint256 public constant MAX_TRAINERS = 256; // one bit per trainer in a uint256 mask
    uint16 public constant BPS = 10_000;

    address public owner;
    Phase public phase;
    uint256 public deposit;
    uint32 public currentRound; // 1-based; 0 before the first round opens
    uint64 public aggregatorDeadline; // past it, anyone may force settlement
    uint16 public finalAccuracyBps;
    uint256 public totalOwed; // credited and not yet withdrawn

    bytes32 public specCid;
    bytes32 public dataCid;
    bytes32 public dataCommitment;
    address public aggregator;
    bytes32 public aggregatorKey;
    uint32 public trainerCount; // L
    uint32 public roundCount; // T
    uint64 public registrationDeadline;
    uint64 public roundDuration;
    uint64 public aggregatorWindow;
    uint256 public participationReward;
    uint256 public aggregatorFee;
    address public roundVerifier;
    address public settlementVerifier;
    uint16[] private _accuracyThresholds;
    uint256[] private _rewardPools;

    address[] private _trainers;
    mapping(address => uint256) private _slot; // trainer index + 1; zero means not registered
    mapping(address => bytes32) public encryptionKeyOf;
    mapping(address => uint32) public benignRoundsOf;
    mapping(uint32 => Round) private _rounds;
    mapping(uint32 => mapping(uint256 => Submission)) private _submissions;
    mapping(address => uint256) public owed;

    event MarketInitialized(
        address indexed owner,
        address indexed aggregator,
        uint256 deposit,
        uint32 trainers,
        uint32 rounds,
        address roundVerifier,
        address settlementVerifier
    );
    event TrainerRegistered(address indexed trainer, uint32 index, bytes32 encryptionKey, bytes32 dataSummaryCid);
    event TrainingStarted(uint64 aggregatorDeadline);
    event RoundOpened(uint32 indexed round, bytes32 modelCid, bytes32 modelCommitment, uint64 deadline);
    event UpdateSubmitted(uint32 indexed round, address indexed trainer, uint32 index, bytes32 cid, bytes32 commitment);
    event RoundFinalized(
        uint32 indexed round, bytes32 aggregateCid, bytes32 aggregateCommitment, uint256 benignMask, bool verified
    );
    event Settled(uint16 accuracyBps, uint256 rewardPool, uint256 ownerRefund, bool verified);
    event PayoutCredited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event MarketCancelled(uint256 ownerRefund);
    event MarketAborted(uint32 round, uint256 ownerRefund);

    error InvalidSpec(string reason);
    error InsufficientDeposit(uint256 required, uint256 provided);
    error WrongPhase(Phase expected, Phase actual);
    error RegistrationClosed();
    error AlreadyRegistered(address trainer);
    error InvalidEncryptionKey();
    error NotRegistered(address account);
    error NotAggregator(address account);
    error RoundNotOpen(uint32 round);
    error PreviousRoundNotFinalized(uint32 round);
    error NoRoundsLeft();
    error SubmissionDeadlinePassed(uint32 round, uint64 deadline);
    error AlreadySubmitted(uint32 round, address trainer);
    error InvalidCid();
    error RoundStillOpen(uint32 round, uint64 deadline);
    error AggregatorWindowClosed(uint64 deadline);
    error MaskIncludesMissingSubmission(uint256 benignMask, uint256 submittedMask);
    error ContributionsLengthMismatch(uint256 expected, uint256 provided);
    error ContributionForNeverBenignTrainer(address trainer);
    error InvalidAccuracy(uint16 accuracyBps);
    error ProofRejected();
    error NotStalled(uint64 aggregatorDeadline);
    error NothingToWithdraw(address account);

    modifier onlyAggregator() {
        if (msg.sender != aggregator) revert NotAggregator(msg.sender);
        _;
    }

    modifier inPhase(Phase expected) {
        if (phase != expected) revert WrongPhase(expected, phase);
        _;
    }

    constructor() {
        _disableInitializers();
    }

    /// @notice Called once by the factory in the same transaction that creates the clone.
    function initialize(address owner_, Spec calldata spec) external payable initializer {
        _checkSpec(spec);
        uint256 required = maxPayout(spec);
        if (msg.value < required) revert InsufficientDeposit(required, msg.value);

        owner = owner_;
        deposit = msg.value;
        specCid = spec.specCid;
        dataCid = spec.dataCid;
        dataCommitment = spec.dataCommitment;
        aggregator = spec.aggregator;
        aggregatorKey = spec.aggregatorKey;
        trainerCount = spec.trainers;
        roundCount = spec.rounds;
        registrationDeadline = spec.registrationDeadline;
        roundDuration = spec.roundDuration;
        aggregatorWindow = spec.aggregatorWindow;
        participationReward = spec.participationReward;
        aggregatorFee = spec.aggregatorFee;
        roundVerifier = spec.roundVerifier;
        settlementVerifier = spec.settlementVerifier;
        _accuracyThresholds = spec.accuracyThresholds;
        _rewardPools = spec.rewardPools;

        emit MarketInitialized(
            owner_, spec.aggregator, msg.value, spec.trainers, spec.rounds, spec.roundVerifier, spec.settlementVerifier
        );
    }

    /// @notice The largest amount the market can ever owe: every trainer benign in every round,
    /// the largest pool, the aggregator fee. The deposit must cover it.
    function maxPayout(Spec calldata spec) public pure returns (uint256 total) {
        uint256 largestPool;
        for (uint256 i = 0; i < spec.rewardPools.length; ++i) {
            if (spec.rewardPools[i] > largestPool) largestPool = spec.rewardPools[i];
        }
        total = uint256(spec.trainers) * spec.rounds * spec.participationReward + largestPool + spec.aggregatorFee;
    }

    function _checkSpec(Spec calldata spec) private view {
        if (spec.trainers == 0 || spec.trainers > MAX_TRAINERS) revert InvalidSpec("trainers");
        if (spec.rounds == 0) revert InvalidSpec("rounds");
        if (spec.aggregator == address(0)) revert InvalidSpec("aggregator");
        if (spec.aggregatorKey == bytes32(0)) revert InvalidSpec("aggregatorKey");
        if (spec.specCid == bytes32(0) || spec.dataCid == bytes32(0)) revert InvalidSpec("cid");
        if (spec.registrationDeadline <= block.timestamp) revert InvalidSpec("registrationDeadline");
        if (spec.roundDuration == 0 || spec.aggregatorWindow == 0) revert InvalidSpec("durations");
        if (spec.accuracyThresholds.length != spec.rewardPools.length) revert InvalidSpec("schedule");
        for (uint256 i = 0; i < spec.accuracyThresholds.length; ++i) {
            if (spec.accuracyThresholds[i] > BPS) revert InvalidSpec("threshold");
            if (i > 0 && spec.accuracyThresholds[i] <= spec.accuracyThresholds[i - 1]) revert InvalidSpec("schedule");
        }
    }

    // ---------------------------------------------------------------- registration

    /// @notice Join the market with the X25519 public key the aggregator uses to open this
    /// trainer's sealed updates. The sender's address receives the payout. `dataSummaryCid` is
    /// the digest of the trainer's data-validation summary (counts and pass/fail, no rows); it is
    /// published in the event only, to keep registration cheap.
    function register(bytes32 encryptionKey, bytes32 dataSummaryCid) external inPhase(Phase.Registration) {
        if (block.timestamp > registrationDeadline) revert RegistrationClosed();
        if (_slot[msg.sender] != 0) revert AlreadyRegistered(msg.sender);
        if (encryptionKey == bytes32(0)) revert InvalidEncryptionKey();
        if (dataSummaryCid == bytes32(0)) revert InvalidCid();

        _trainers.push(msg.sender);
        uint256 count = _trainers.length;
        _slot[msg.sender] = count;
        encryptionKeyOf[msg.sender] = encryptionKey;
        emit TrainerRegistered(msg.sender, uint32(count - 1), encryptionKey, dataSummaryCid);

        if (count == trainerCount) {
            phase = Phase.Training;
            aggregatorDeadline = uint64(block.timestamp) + aggregatorWindow;
            emit TrainingStarted(aggregatorDeadline);
        }
    }

    /// @notice Owner's refund when registration closes short of L trainers.
    function cancel() external inPhase(Phase.Registration) {
        if (block.timestamp <= registrationDeadline) revert NotStalled(registrationDeadline);
        phase = Phase.Cancelled;
        _credit(owner, deposit);
        emit MarketCancelled(deposit);
    }

    // ---------------------------------------------------------------- rounds

    function openRound(bytes32 modelCid, bytes32 modelCommitment) external onlyAggregator inPhase(Phase.Training) {
        uint32 previous = currentRound;
        if (previous > 0 && !_rounds[previous].finalized) revert PreviousRoundNotFinalized(previous);
        if (previous == roundCount) revert NoRoundsLeft();
        if (modelCid == bytes32(0)) revert InvalidCid();

        uint32 round = previous + 1;
        uint64 deadline = uint64(block.timestamp) + roundDuration;
        Round storage r = _rounds[round];
        r.modelCid = modelCid;
        r.modelCommitment = modelCommitment;
        r.deadline = deadline;
        currentRound = round;
        aggregatorDeadline = deadline + aggregatorWindow;
        emit RoundOpened(round, modelCid, modelCommitment, deadline);
    }

    function submit(uint32 round, bytes32 cid, bytes32 commitment) external {
        uint256 slot = _slot[msg.sender];
        if (slot == 0) revert NotRegistered(msg.sender);
        if (phase != Phase.Training || round != currentRound || round == 0) revert RoundNotOpen(round);
        Round storage r = _rounds[round];
        if (r.finalized) revert RoundNotOpen(round);
        if (block.timestamp > r.deadline) revert SubmissionDeadlinePassed(round, r.deadline);
        uint256 bit = 1 << (slot - 1);
        if (r.submittedMask & bit != 0) revert AlreadySubmitted(round, msg.sender);
        if (cid == bytes32(0)) revert InvalidCid();

        r.submittedMask |= bit;
        _submissions[round][slot - 1] = Submission(cid, commitment);
        emit UpdateSubmitted(round, msg.sender, uint32(slot - 1), cid, commitment);
    }

    /// @notice Close the round with the aggregate and the benign mask (bit i: trainer i kept).
    /// With a round verifier set, `proof` must verify against the instances this contract builds
    /// from its own state (see contracts/README.md); without one, the round is recorded as unverified.
    function finalizeRound(
        uint32 round,
        bytes32 aggregateCid,
        bytes32 aggregateCommitment,
        uint256 benignMask,
        bytes calldata proof
    ) external onlyAggregator inPhase(Phase.Training) {
        if (round != currentRound || round == 0) revert RoundNotOpen(round);
        Round storage r = _rounds[round];
        if (r.finalized) revert RoundNotOpen(round);
        uint256 submitted = r.submittedMask;
        bool everyoneSubmitted = submitted == _fullMask();
        if (!everyoneSubmitted && block.timestamp <= r.deadline) revert RoundStillOpen(round, r.deadline);
        if (block.timestamp > aggregatorDeadline) revert AggregatorWindowClosed(aggregatorDeadline);
        if (benignMask & ~submitted != 0) revert MaskIncludesMissingSubmission(benignMask, submitted);
        if (aggregateCid == bytes32(0)) revert InvalidCid();

        bool verified = false;
        if (roundVerifier != address(0)) {
            uint256[] memory instances = _roundInstances(round, aggregateCommitment, benignMask);
            if (!IProofVerifier(roundVerifier).verifyProof(proof, instances)) revert ProofRejected();
            verified = true;
        }

        r.finalized = true;
        r.verified = verified;
        r.benignMask = benignMask;
        r.aggregateCid = aggregateCid;
        r.aggregateCommitment = aggregateCommitment;
        for (uint256 i = 0; i < _trainers.length; ++i) {
            if (benignMask & (1 << i) != 0) benignRoundsOf[_trainers[i]] += 1;
        }
        aggregatorDeadline = uint64(block.timestamp) + aggregatorWindow;
        if (round == roundCount) phase = Phase.Settlement;
        emit RoundFinalized(round, aggregateCid, aggregateCommitment, benignMask, verified);
    }

    function _roundInstances(uint32 round, bytes32 aggregateCommitment, uint256 benignMask)
        private
        view
        returns (uint256[] memory instances)
    {
        uint256 n = _trainers.length;
        instances = new uint256[](n + 2);
        for (uint256 i = 0; i < n; ++i) {
            instances[i] = uint256(_submissions[round][i].commitment);
        }
        instances[n] = uint256(aggregateCommitment);
        instances[n + 1] = benignMask;
    }

    // ---------------------------------------------------------------- settlement

    /// @notice Credit every payout by eq. (5) of sources/004 and refund the owner the rest.
    /// @param accuracyBps final test accuracy in basis points; picks alpha from the schedule.
    /// @param contributions one signed contribution per trainer, in registration order.
    function settle(uint16 accuracyBps, int256[] calldata contributions, bytes calldata proof)
        external
        onlyAggregator
        inPhase(Phase.Settlement)
        nonReentrant
    {
        if (block.timestamp > aggregatorDeadline) revert AggregatorWindowClosed(aggregatorDeadline);
        if (accuracyBps > BPS) revert InvalidAccuracy(accuracyBps);
        uint256 n = _trainers.length;
        if (contributions.length != n) revert ContributionsLengthMismatch(n, contributions.length);

        uint256 positiveSum;
        for (uint256 i = 0; i < n; ++i) {
            if (contributions[i] > 0) {
                if (benignRoundsOf[_trainers[i]] == 0) revert ContributionForNeverBenignTrainer(_trainers[i]);
                positiveSum += uint256(contributions[i]);
            }
        }

        bool verified = false;
        if (settlementVerifier != address(0)) {
            uint256[] memory instances = new uint256[](n + 1);
            for (uint256 i = 0; i < n; ++i) {
                instances[i] = uint256(contributions[i]);
            }
            instances[n] = accuracyBps;
            if (!IProofVerifier(settlementVerifier).verifyProof(proof, instances)) revert ProofRejected();
            verified = true;
        }

        uint256 pool = rewardPoolFor(accuracyBps);
        uint256 paid;
        for (uint256 i = 0; i < n; ++i) {
            address trainer = _trainers[i];
            uint256 amount = uint256(benignRoundsOf[trainer]) * participationReward;
            if (contributions[i] > 0) amount += (pool * uint256(contributions[i])) / positiveSum;
            paid += amount;
            _credit(trainer, amount);
        }
        _credit(aggregator, aggregatorFee);
        paid += aggregatorFee;

        uint256 refund = deposit - paid; // cannot underflow: the deposit covers maxPayout
        _credit(owner, refund);
        phase = Phase.Settled;
        finalAccuracyBps = accuracyBps;
        emit Settled(accuracyBps, pool, refund, verified);
    }

    /// @notice Alpha of eq. (5): the pool of the highest threshold the accuracy reaches.
    function rewardPoolFor(uint16 accuracyBps) public view returns (uint256 pool) {
        for (uint256 i = 0; i < _accuracyThresholds.length; ++i) {
            if (accuracyBps >= _accuracyThresholds[i]) pool = _rewardPools[i];
        }
    }

    /// @notice When the aggregator stalls past its deadline, anyone ends the market: trainers are
    /// credited R_p for every round they were benign in, everything else returns to the owner
    /// (DAI's forceful settle, sources/003). The aggregator earns no fee.
    function forceSettle() external nonReentrant {
        if (phase != Phase.Training && phase != Phase.Settlement) revert WrongPhase(Phase.Training, phase);
        if (block.timestamp <= aggregatorDeadline) revert NotStalled(aggregatorDeadline);
        uint256 paid;
        for (uint256 i = 0; i < _trainers.length; ++i) {
            uint256 amount = uint256(benignRoundsOf[_trainers[i]]) * participationReward;
            paid += amount;
            _credit(_trainers[i], amount);
        }
        uint256 refund = deposit - paid;
        _credit(owner, refund);
        phase = Phase.Aborted;
        emit MarketAborted(currentRound, refund);
    }

    // ---------------------------------------------------------------- payments

    function withdraw() external nonReentrant {
        uint256 amount = owed[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        owed[msg.sender] = 0;
        totalOwed -= amount;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        owed[account] += amount;
        totalOwed += amount;
        emit PayoutCredited(account, amount);
    }

    // ---------------------------------------------------------------- views

    function trainers() external view returns (address[] memory) {
        return _trainers;
    }

    function trainerIndex(address trainer) external view returns (uint256) {
        uint256 slot = _slot[trainer];
        if (slot == 0) revert NotRegistered(trainer);
        return slot - 1;
    }

    function getRound(uint32 round) external view returns (Round memory) {
        return _rounds[round];
    }

    function getSubmission(uint32 round, uint256 index) external view returns (Submission memory) {
        return _submissions[round][index];
    }

    function rewardSchedule() external view returns (uint16[] memory thresholds, uint256[] memory pools) {
        return (_accuracyThresholds, _rewardPools);
    }

    function isVerified() external view returns (bool) {
        return roundVerifier != address(0) && settlementVerifier != address(0);
    }

    function _fullMask() private view returns (uint256) {
        uint256 n = _trainers.length;
        return n == MAX_TRAINERS ? type(uint256).max : (uint256(1) << n) - 1;
    }
}
