// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IProofVerifier} from "./IProofVerifier.sol";

/// @title One fedmarket data market: escrow, registration, seed reveal, rounds, settlement.
/// @notice Follows the proof-of-contribution data market (sources/004, sections IV.A-C): the
/// project owner escrows a reward, L trainers register, each round the aggregator publishes a
/// global model, trainers submit commitments to their updates, the aggregator finalizes the round
/// with the benign mask, and at the end settles with the contribution vector. Payouts follow
/// eq. (5): R_i = R_p * benignRounds_i + alpha * C_i^+ / sum_j C_j^+.
/// Departures from sources/004: trainers commit to a seed at registration and reveal it, and the
/// combined seed fixes the owner's validation/test split (the paper lets the owner choose it);
/// every phase has a deadline with a forced exit (DAI's forceful settle and refund, sources/003;
/// OmniLytics' payment atomicity, sources/001), so no path leaves funds locked.
/// @dev Deployed only as an EIP-1167 clone by {MarketFactory}. Storage is laid out for the
/// calls made most often: `submit` reads two slots besides its own and writes one new one,
/// `finalizeRound` writes no per-trainer storage, `settle` packs two payouts per slot and writes
/// the owner's and aggregator's credit into slots that are already non-zero. The reentrancy
/// guard is OpenZeppelin's transient one (EIP-1153): a clone never runs a constructor, so the
/// storage-based guard would pay a zero-to-non-zero write on its first use in every market. CIDs (CIDv1, raw
/// codec, sha2-256) are carried as their 32-byte digest and live in events only.
contract DataMarket is Initializable, ReentrancyGuardTransient {
    enum Phase {
        Registration,
        SeedReveal,
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
        uint64 revealWindow; // seconds trainers have to reveal their seeds once L registered
        uint64 roundDuration; // seconds a round accepts submissions
        uint64 aggregatorWindow; // seconds the aggregator has for each of its steps
        uint256 participationReward; // R_p, paid per benign round
        uint256 aggregatorFee;
        uint16[] accuracyThresholds; // basis points, strictly ascending
        uint256[] rewardPools; // alpha for reaching the threshold at the same index
        address roundVerifier; // zero: rounds are not proven
        address settlementVerifier; // zero: settlement is not proven
    }

    /// One slot per round: written when the round opens, updated by each submission and at
    /// finalization. Per-trainer commitments live in `_commitments`.
    struct Round {
        uint64 deadline; // submissions close; zero: not opened
        bool finalized;
        bool verified;
        uint128 benignMask; // bit i: trainer i kept by the outlier rule
    }

    struct Member {
        uint16 slot; // registration index + 1; zero means not registered
        bool revealed;
    }

    uint256 public constant MAX_TRAINERS = 128; // one bit per trainer in a uint128 mask
    uint16 public constant BPS = 10_000;
    /// Order of the BN254 scalar field: commitments and proof instances are elements of it.
    uint256 public constant FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617;

    // slot: everything `submit` needs besides the round and the member
    address public owner;
    Phase public phase;
    uint32 public currentRound; // 1-based; 0 before the first round opens
    uint16 public finalAccuracyBps;
    // slot: the aggregator and its clock
    address public aggregator;
    uint64 public aggregatorDeadline; // past it, anyone may force settlement
    uint16 public revealedCount;
    // slot: shape and clocks fixed at creation
    uint32 public trainerCount; // L
    uint32 public roundCount; // T
    uint64 public registrationDeadline;
    uint64 public revealWindow;
    uint64 public roundDuration;
    // slot: non-zero from creation, so crediting the owner costs no new slot
    uint64 public aggregatorWindow;
    uint64 public revealDeadline;
    uint128 private _ownerOwed;
    // slot: non-zero once anyone revealed, which settlement and forced settlement require
    uint128 public activeMask; // trainers who revealed; only they train and earn
    uint128 private _aggregatorOwed;
    // slot: the escrow, in wei (< 2^128, checked at creation)
    uint128 public deposit;
    uint128 private _undistributed; // escrow not yet credited to anyone

    uint256 public participationReward;
    uint256 public aggregatorFee;
    uint256 public totalWithdrawn;
    bytes32 public specCid;
    bytes32 public dataCid;
    bytes32 public dataCommitment;
    bytes32 public aggregatorKey;
    bytes32 public splitSeed; // fixes the owner's validation/test split; zero until training
    bytes32 public modelCommitment; // the current global model: initial, then each aggregate
    bytes32 private _seedXor;
    address public roundVerifier;
    address public settlementVerifier;
    uint16[] private _accuracyThresholds;
    uint256[] private _rewardPools;

    address[] private _trainers;
    mapping(address => Member) private _members;
    mapping(address => bytes32) public encryptionKeyOf;
    mapping(address => bytes32) public seedCommitmentOf;
    mapping(uint32 => Round) private _rounds;
    mapping(uint32 => mapping(uint256 => bytes32)) private _commitments; // round => index => commitment
    uint128[MAX_TRAINERS] private _trainerOwed; // by registration index, two per slot

    event MarketInitialized(address indexed owner, uint256 deposit, Spec spec);
    event TrainerRegistered(
        address indexed trainer, uint32 index, bytes32 encryptionKey, bytes32 seedCommitment, bytes32 dataSummaryCid
    );
    event SeedRevealStarted(uint64 revealDeadline);
    event SeedRevealed(address indexed trainer, uint32 index, bytes32 seed);
    event TrainingStarted(bytes32 splitSeed, uint128 activeMask, uint64 aggregatorDeadline);
    event RoundOpened(uint32 indexed round, bytes32 modelCid, bytes32 modelCommitment, uint64 deadline);
    event UpdateSubmitted(uint32 indexed round, address indexed trainer, bytes32 cid, bytes32 commitment);
    event RoundFinalized(
        uint32 indexed round, bytes32 aggregateCid, bytes32 aggregateCommitment, uint128 benignMask, bool verified
    );
    event Settled(
        uint16 accuracyBps,
        uint256 rewardPool,
        int256[] contributions,
        uint256[] payouts,
        uint256 aggregatorFee,
        uint256 ownerRefund,
        bool verified
    );
    event MarketCancelled(uint256 ownerRefund);
    event MarketAborted(uint32 round, uint256[] payouts, uint256 ownerRefund);
    event Withdrawn(address indexed account, uint256 amount);

    error InvalidSpec(string reason);
    error InsufficientDeposit(uint256 required, uint256 provided);
    error WrongPhase(Phase expected, Phase actual);
    error RegistrationClosed(uint64 deadline);
    error AlreadyRegistered(address trainer);
    error PartyCannotTrain(address account);
    error InvalidEncryptionKey();
    error InvalidSeedCommitment();
    error SeedMismatch(address trainer);
    error AlreadyRevealed(address trainer);
    error RevealStillOpen(uint64 deadline);
    error RevealClosed(uint64 deadline);
    error NotRegistered(address account);
    error NotActive(address trainer);
    error NotAggregator(address account);
    error RoundNotOpen(uint32 round);
    error PreviousRoundNotFinalized(uint32 round);
    error NoRoundsLeft();
    error SubmissionDeadlinePassed(uint32 round, uint64 deadline);
    error AlreadySubmitted(uint32 round, address trainer);
    error InvalidCid();
    error InvalidCommitment();
    error RoundStillOpen(uint32 round, uint64 deadline);
    error AggregatorWindowClosed(uint64 deadline);
    error MaskIncludesMissingSubmission(uint32 round, uint256 index);
    error ContributionsLengthMismatch(uint256 expected, uint256 provided);
    error ContributionForNeverBenignTrainer(address trainer);
    error InvalidAccuracy(uint16 accuracyBps);
    error ProofRejected();
    error NotStalled(uint64 deadline);
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
        if (owner_ == address(0)) revert InvalidSpec("owner");
        _checkSpec(spec);
        uint256 required = maxPayout(spec);
        if (msg.value < required) revert InsufficientDeposit(required, msg.value);
        if (msg.value > type(uint128).max) revert InvalidSpec("deposit"); // payouts are stored as uint128

        owner = owner_;
        deposit = uint128(msg.value);
        _undistributed = uint128(msg.value);
        specCid = spec.specCid;
        dataCid = spec.dataCid;
        dataCommitment = spec.dataCommitment;
        aggregator = spec.aggregator;
        aggregatorKey = spec.aggregatorKey;
        trainerCount = spec.trainers;
        roundCount = spec.rounds;
        registrationDeadline = spec.registrationDeadline;
        revealWindow = spec.revealWindow;
        roundDuration = spec.roundDuration;
        aggregatorWindow = spec.aggregatorWindow;
        participationReward = spec.participationReward;
        aggregatorFee = spec.aggregatorFee;
        roundVerifier = spec.roundVerifier;
        settlementVerifier = spec.settlementVerifier;
        _accuracyThresholds = spec.accuracyThresholds;
        _rewardPools = spec.rewardPools;
        emit MarketInitialized(owner_, msg.value, spec);
    }

    /// @notice The largest amount the market can ever owe: every trainer benign in every round,
    /// the largest pool, the aggregator fee. The deposit must cover it.
    function maxPayout(Spec calldata spec) public pure returns (uint256 total) {
        uint256 largestPool = 0;
        for (uint256 i = 0; i < spec.rewardPools.length; ++i) {
            if (spec.rewardPools[i] > largestPool) largestPool = spec.rewardPools[i];
        }
        total = uint256(spec.trainers) * spec.rounds * spec.participationReward + largestPool + spec.aggregatorFee;
    }

    function _checkSpec(Spec calldata spec) private view {
        if (spec.trainers == 0 || spec.trainers > MAX_TRAINERS) revert InvalidSpec("trainers");
        if (spec.rounds == 0 || spec.rounds > type(uint32).max - 1) revert InvalidSpec("rounds");
        if (spec.aggregator == address(0)) revert InvalidSpec("aggregator");
        if (spec.aggregatorKey == bytes32(0)) revert InvalidSpec("aggregatorKey");
        if (spec.specCid == bytes32(0) || spec.dataCid == bytes32(0)) revert InvalidSpec("cid");
        if (spec.registrationDeadline <= block.timestamp) revert InvalidSpec("registrationDeadline");
        if (spec.revealWindow == 0 || spec.roundDuration == 0 || spec.aggregatorWindow == 0) {
            revert InvalidSpec("durations");
        }
        if (spec.accuracyThresholds.length != spec.rewardPools.length) revert InvalidSpec("schedule");
        for (uint256 i = 0; i < spec.accuracyThresholds.length; ++i) {
            if (spec.accuracyThresholds[i] > BPS) revert InvalidSpec("threshold");
            if (i > 0 && spec.accuracyThresholds[i] <= spec.accuracyThresholds[i - 1]) revert InvalidSpec("schedule");
        }
    }

    // ---------------------------------------------------------------- registration and seeds

    /// @notice Join the market. `encryptionKey` is the X25519 public key the aggregator uses to
    /// open this trainer's sealed updates; `seedCommitment` is {seedCommitmentFor} of a random
    /// seed revealed once L trainers joined; `dataSummaryCid` is the digest of the trainer's data
    /// validation summary (counts and pass/fail, no rows), published in the event only. The
    /// sender's address receives the payout. The owner and the aggregator cannot train.
    function register(bytes32 encryptionKey, bytes32 seedCommitment, bytes32 dataSummaryCid)
        external
        inPhase(Phase.Registration)
    {
        if (block.timestamp > registrationDeadline) revert RegistrationClosed(registrationDeadline);
        if (msg.sender == owner || msg.sender == aggregator) revert PartyCannotTrain(msg.sender);
        if (_members[msg.sender].slot != 0) revert AlreadyRegistered(msg.sender);
        if (encryptionKey == bytes32(0)) revert InvalidEncryptionKey();
        if (seedCommitment == bytes32(0)) revert InvalidSeedCommitment();
        if (dataSummaryCid == bytes32(0)) revert InvalidCid();

        _trainers.push(msg.sender);
        uint256 count = _trainers.length;
        _members[msg.sender] = Member(uint16(count), false);
        encryptionKeyOf[msg.sender] = encryptionKey;
        seedCommitmentOf[msg.sender] = seedCommitment;
        emit TrainerRegistered(msg.sender, uint32(count - 1), encryptionKey, seedCommitment, dataSummaryCid);

        if (count == trainerCount) {
            phase = Phase.SeedReveal;
            revealDeadline = uint64(block.timestamp) + revealWindow;
            emit SeedRevealStarted(revealDeadline);
        }
    }

    /// @notice The commitment a trainer registers for `seed`: binding market and trainer, so a
    /// commitment cannot be copied from another trainer or market.
    function seedCommitmentFor(address trainer, bytes32 seed) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), trainer, seed));
    }

    /// @notice Reveal the seed committed at registration. Trainers who do not reveal before the
    /// deadline are excluded: they cannot submit and earn nothing.
    function reveal(bytes32 seed) external inPhase(Phase.SeedReveal) {
        Member memory member = _members[msg.sender];
        if (member.slot == 0) revert NotRegistered(msg.sender);
        if (member.revealed) revert AlreadyRevealed(msg.sender);
        if (block.timestamp > revealDeadline) revert RevealClosed(revealDeadline);
        if (seedCommitmentFor(msg.sender, seed) != seedCommitmentOf[msg.sender]) revert SeedMismatch(msg.sender);

        _members[msg.sender].revealed = true;
        _seedXor ^= seed;
        activeMask |= uint128(1) << (member.slot - 1);
        uint16 revealed = revealedCount + 1;
        revealedCount = revealed;
        emit SeedRevealed(msg.sender, member.slot - 1, seed);
        if (revealed == trainerCount) _startTraining();
    }

    /// @notice After the reveal deadline anyone starts training with the trainers who revealed;
    /// if none did, the market is cancelled and the owner refunded.
    function closeReveal() external nonReentrant inPhase(Phase.SeedReveal) {
        if (block.timestamp <= revealDeadline) revert RevealStillOpen(revealDeadline);
        if (revealedCount == 0) {
            _cancel();
        } else {
            _startTraining();
        }
    }

    function _startTraining() private {
        phase = Phase.Training;
        // XOR of committed seeds: no trainer can bias it without breaking a commitment; the
        // last revealer can only withhold (and be excluded), the usual commit-reveal limit.
        bytes32 seed = keccak256(abi.encode(block.chainid, address(this), _seedXor));
        splitSeed = seed;
        uint64 deadline = uint64(block.timestamp) + aggregatorWindow;
        aggregatorDeadline = deadline;
        emit TrainingStarted(seed, activeMask, deadline);
    }

    /// @notice The owner's refund when registration closes short of L trainers (anyone may call).
    function cancel() external nonReentrant inPhase(Phase.Registration) {
        if (block.timestamp <= registrationDeadline) revert NotStalled(registrationDeadline);
        _cancel();
    }

    function _cancel() private {
        phase = Phase.Cancelled;
        uint256 refund = _undistributed;
        _undistributed = 0;
        _ownerOwed = uint128(refund);
        emit MarketCancelled(refund);
    }

    // ---------------------------------------------------------------- rounds

    /// @notice Publish the global model of the next round. Round 1 takes the initial model and
    /// its commitment; later rounds must start from the previous aggregate.
    function openRound(bytes32 modelCid, bytes32 initialModelCommitment)
        external
        onlyAggregator
        inPhase(Phase.Training)
    {
        uint32 previous = currentRound;
        if (previous > 0 && !_rounds[previous].finalized) revert PreviousRoundNotFinalized(previous);
        if (previous == roundCount) revert NoRoundsLeft();
        if (block.timestamp > aggregatorDeadline) revert AggregatorWindowClosed(aggregatorDeadline);
        if (modelCid == bytes32(0)) revert InvalidCid();
        bytes32 commitment = modelCommitment;
        if (previous == 0) {
            if (initialModelCommitment == bytes32(0) || uint256(initialModelCommitment) >= FIELD) {
                revert InvalidCommitment();
            }
            commitment = initialModelCommitment;
            modelCommitment = commitment;
        }

        uint32 round = previous + 1;
        uint64 deadline = uint64(block.timestamp) + roundDuration;
        _rounds[round].deadline = deadline;
        currentRound = round;
        aggregatorDeadline = deadline + aggregatorWindow;
        emit RoundOpened(round, modelCid, commitment, deadline);
    }

    /// @notice Submit this round's update: `cid` is the digest of the sealed update in the
    /// content store (event only), `commitment` the field element the round proof binds to.
    function submit(uint32 round, bytes32 cid, bytes32 commitment) external {
        Member memory member = _members[msg.sender];
        if (member.slot == 0) revert NotRegistered(msg.sender);
        if (!member.revealed) revert NotActive(msg.sender);
        // An opened round that is not finalized is the current one (a round opens only after the
        // previous one is finalized), and every end state is reached only after the round's
        // deadline or finalization: so the round's own slot says everything, no phase read.
        Round memory r = _rounds[round];
        if (r.deadline == 0 || r.finalized) revert RoundNotOpen(round);
        if (block.timestamp > r.deadline) revert SubmissionDeadlinePassed(round, r.deadline);
        if (cid == bytes32(0)) revert InvalidCid();
        if (commitment == bytes32(0) || uint256(commitment) >= FIELD) revert InvalidCommitment();
        uint256 index = member.slot - 1;
        if (_commitments[round][index] != bytes32(0)) revert AlreadySubmitted(round, msg.sender);

        _commitments[round][index] = commitment;
        emit UpdateSubmitted(round, msg.sender, cid, commitment);
    }

    /// @notice Close the round with the aggregate and the benign mask (bit i: trainer i kept).
    /// Allowed once every active trainer submitted, or after the submission deadline; a trainer
    /// who did not submit is simply absent from the round. With a round verifier set, `proof`
    /// must verify against the instances this contract builds from its own state (see
    /// {roundInstances}); without one the round is recorded as unverified.
    function finalizeRound(
        uint32 round,
        bytes32 aggregateCid,
        bytes32 aggregateCommitment,
        uint128 benignMask,
        bytes calldata proof
    ) external onlyAggregator inPhase(Phase.Training) nonReentrant {
        if (round != currentRound || round == 0) revert RoundNotOpen(round);
        Round memory r = _rounds[round];
        if (r.finalized) revert RoundNotOpen(round);
        if (block.timestamp > aggregatorDeadline) revert AggregatorWindowClosed(aggregatorDeadline);
        if (aggregateCid == bytes32(0)) revert InvalidCid();
        if (aggregateCommitment == bytes32(0) || uint256(aggregateCommitment) >= FIELD) revert InvalidCommitment();
        uint256 n = trainerCount;
        if (n < MAX_TRAINERS && benignMask >> n != 0) revert MaskIncludesMissingSubmission(round, n);
        // Submissions are counted here rather than in `submit`, keeping `submit` to one write.
        uint256 submitted = 0;
        for (uint256 i = 0; i < n; ++i) {
            bool present = _commitments[round][i] != bytes32(0);
            if (present) ++submitted;
            else if (benignMask >> i & 1 == 1) revert MaskIncludesMissingSubmission(round, i);
        }
        if (submitted < revealedCount && block.timestamp <= r.deadline) revert RoundStillOpen(round, r.deadline);

        // Effects first, then the verifier call: a rejected proof reverts all of it.
        bool verified = roundVerifier != address(0);
        r.finalized = true;
        r.verified = verified;
        r.benignMask = benignMask;
        _rounds[round] = r;
        bytes32 startModel = modelCommitment;
        modelCommitment = aggregateCommitment;
        aggregatorDeadline = uint64(block.timestamp) + aggregatorWindow;
        if (round == roundCount) phase = Phase.Settlement;
        emit RoundFinalized(round, aggregateCid, aggregateCommitment, benignMask, verified);

        if (verified) {
            uint256[] memory instances = _roundInstances(round, startModel, aggregateCommitment, benignMask);
            if (!_accepts(roundVerifier, proof, instances)) revert ProofRejected();
        }
    }

    /// @notice Public instances of round `round`'s proof, built from this contract's state; the
    /// layout is documented in contracts/README.md.
    /// [domain, round, cur_0..cur_{L-1}, modelCommitment, aggregateCommitment, mask, previous mask]
    function roundInstances(uint32 round, bytes32 aggregateCommitment, uint128 benignMask)
        external
        view
        returns (uint256[] memory)
    {
        return _roundInstances(round, modelCommitment, aggregateCommitment, benignMask);
    }

    function _roundInstances(uint32 round, bytes32 startModel, bytes32 aggregateCommitment, uint128 benignMask)
        private
        view
        returns (uint256[] memory instances)
    {
        uint256 n = trainerCount;
        instances = new uint256[](n + 6);
        instances[0] = domain(round);
        instances[1] = round;
        for (uint256 i = 0; i < n; ++i) {
            instances[2 + i] = uint256(_commitments[round][i]);
        }
        instances[n + 2] = uint256(startModel);
        instances[n + 3] = uint256(aggregateCommitment);
        instances[n + 4] = benignMask;
        instances[n + 5] = round > 1 ? _rounds[round - 1].benignMask : 0;
    }

    /// @notice Binds a proof to this chain, this market and one step (round number, or
    /// `type(uint32).max` for settlement), so a proof cannot be replayed elsewhere.
    function domain(uint32 step) public view returns (uint256) {
        return uint256(keccak256(abi.encode(block.chainid, address(this), step))) % FIELD;
    }

    // ---------------------------------------------------------------- settlement

    /// @notice The seed the settlement's RLOO subsets are drawn from: fixed by the trainers'
    /// split seed and the final model, so the aggregator cannot choose it.
    function rlooSeed() public view returns (bytes32) {
        return keccak256(abi.encode(splitSeed, modelCommitment));
    }

    /// @notice Public instances of the settlement proof (layout in contracts/README.md):
    /// [domain, dataCommitment, final model commitment, RLOO seed, accuracy, final round's mask,
    ///  final round's commitments..., contributions...]
    function settlementInstances(uint16 accuracyBps, int256[] calldata contributions)
        public
        view
        returns (uint256[] memory instances)
    {
        uint256 n = trainerCount;
        uint256 m = contributions.length;
        instances = new uint256[](n + m + 6);
        instances[0] = domain(type(uint32).max);
        instances[1] = uint256(dataCommitment) % FIELD;
        instances[2] = uint256(modelCommitment);
        instances[3] = uint256(rlooSeed()) % FIELD;
        instances[4] = accuracyBps;
        instances[5] = _rounds[roundCount].benignMask;
        for (uint256 i = 0; i < n; ++i) {
            instances[6 + i] = uint256(_commitments[roundCount][i]);
        }
        for (uint256 i = 0; i < m; ++i) {
            instances[6 + n + i] = _toField(contributions[i]);
        }
    }

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
        uint256 n = trainerCount;
        if (contributions.length != n) revert ContributionsLengthMismatch(n, contributions.length);

        uint256[] memory payouts = _benignRoundCounts();
        uint256 positiveSum = 0;
        for (uint256 i = 0; i < n; ++i) {
            if (contributions[i] > 0) {
                // A trainer flagged in every round earns nothing, contribution included.
                if (payouts[i] == 0) revert ContributionForNeverBenignTrainer(_trainers[i]);
                positiveSum += uint256(contributions[i]);
            }
            payouts[i] *= participationReward;
        }

        uint256 pool = rewardPoolFor(accuracyBps);
        uint256 paid = 0;
        for (uint256 i = 0; i < n; ++i) {
            if (contributions[i] > 0) payouts[i] += (pool * uint256(contributions[i])) / positiveSum;
            paid += payouts[i];
        }
        _creditTrainers(payouts);
        _aggregatorOwed = uint128(aggregatorFee);
        uint256 refund = _undistributed - paid - aggregatorFee; // cannot underflow: the deposit covers maxPayout
        _ownerOwed = uint128(refund);
        _undistributed = 0;
        phase = Phase.Settled;
        finalAccuracyBps = accuracyBps;
        bool verified = settlementVerifier != address(0);
        emit Settled(accuracyBps, pool, contributions, payouts, aggregatorFee, refund, verified);

        // Effects first, then the verifier call: a rejected proof reverts all of it.
        if (verified) {
            uint256[] memory instances = settlementInstances(accuracyBps, contributions);
            if (!_accepts(settlementVerifier, proof, instances)) revert ProofRejected();
        }
    }

    /// @dev A verifier's answer, with a revert read as a rejection: EZKL's generated verifiers
    /// revert on a proof they reject, and a `proof` argument that does not decode reverts inside
    /// an adapter; either way the market reports `ProofRejected`.
    function _accepts(address verifier, bytes calldata proof, uint256[] memory instances) private returns (bool) {
        try IProofVerifier(verifier).verifyProof(proof, instances) returns (bool ok) {
            return ok;
        } catch {
            return false;
        }
    }

    /// @notice Alpha of eq. (5): the pool of the highest threshold the accuracy reaches.
    function rewardPoolFor(uint16 accuracyBps) public view returns (uint256 pool) {
        uint256 count = _accuracyThresholds.length;
        for (uint256 i = 0; i < count; ++i) {
            if (accuracyBps >= _accuracyThresholds[i]) pool = _rewardPools[i];
        }
    }

    /// @notice When the aggregator stalls past its deadline (in training or settlement), anyone
    /// ends the market: trainers are credited R_p for every finalized round they were benign in,
    /// everything else returns to the owner (DAI's forceful settle, sources/003). The aggregator
    /// earns no fee.
    function forceSettle() external nonReentrant {
        if (phase != Phase.Training && phase != Phase.Settlement) revert WrongPhase(Phase.Training, phase);
        if (block.timestamp <= aggregatorDeadline) revert NotStalled(aggregatorDeadline);
        uint256[] memory payouts = _benignRoundCounts();
        uint256 paid = 0;
        for (uint256 i = 0; i < payouts.length; ++i) {
            payouts[i] *= participationReward;
            paid += payouts[i];
        }
        _creditTrainers(payouts);
        uint256 refund = _undistributed - paid;
        _ownerOwed = uint128(refund);
        _undistributed = 0;
        phase = Phase.Aborted;
        emit MarketAborted(currentRound, payouts, refund);
    }

    /// How many finalized rounds each trainer was benign in (an open round has an empty mask).
    function _benignRoundCounts() private view returns (uint256[] memory counts) {
        uint256 n = trainerCount;
        counts = new uint256[](n);
        uint32 last = currentRound;
        for (uint32 round = 1; round <= last; ++round) {
            uint128 mask = _rounds[round].benignMask;
            for (uint256 i = 0; mask != 0 && i < n; ++i) {
                if (mask >> i & 1 == 1) counts[i] += 1;
            }
        }
    }

    // ---------------------------------------------------------------- payments

    /// @notice Pay out everything credited to the sender (as trainer, owner or aggregator).
    function withdraw() external nonReentrant {
        uint256 amount = 0;
        if (msg.sender == owner) {
            amount += _ownerOwed;
            _ownerOwed = 0;
        }
        if (msg.sender == aggregator) {
            amount += _aggregatorOwed;
            _aggregatorOwed = 0;
        }
        uint256 slot = _members[msg.sender].slot;
        if (slot != 0) {
            amount += _trainerOwed[slot - 1];
            _trainerOwed[slot - 1] = 0;
        }
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        totalWithdrawn += amount;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    function _creditTrainers(uint256[] memory payouts) private {
        for (uint256 i = 0; i < payouts.length; ++i) {
            if (payouts[i] != 0) _trainerOwed[i] = uint128(payouts[i]); // deposit < 2^128 wei
        }
    }

    // ---------------------------------------------------------------- views

    /// @notice What `account` can withdraw now.
    function owed(address account) external view returns (uint256 amount) {
        if (account == owner) amount += _ownerOwed;
        if (account == aggregator) amount += _aggregatorOwed;
        uint256 slot = _members[account].slot;
        if (slot != 0) amount += _trainerOwed[slot - 1];
    }

    /// @notice Everything ever made withdrawable.
    function totalCredited() public view returns (uint256) {
        return deposit - _undistributed;
    }

    /// @notice Credited and not yet withdrawn.
    function totalOwed() external view returns (uint256) {
        return totalCredited() - totalWithdrawn;
    }

    /// @notice Escrow not yet credited to anyone.
    function undistributed() external view returns (uint256) {
        return _undistributed;
    }

    function trainers() external view returns (address[] memory) {
        return _trainers;
    }

    function trainerIndex(address trainer) external view returns (uint256) {
        uint256 slot = _members[trainer].slot;
        if (slot == 0) revert NotRegistered(trainer);
        return slot - 1;
    }

    function isActive(address trainer) external view returns (bool) {
        return _members[trainer].revealed;
    }

    function getRound(uint32 round) external view returns (Round memory) {
        return _rounds[round];
    }

    /// @notice Commitment trainer `index` submitted in `round` (zero if none).
    function commitmentOf(uint32 round, uint256 index) external view returns (bytes32) {
        return _commitments[round][index];
    }

    /// @notice Bit i set: trainer i submitted in `round`.
    function submittedMask(uint32 round) external view returns (uint128 mask) {
        uint256 n = _trainers.length;
        for (uint256 i = 0; i < n; ++i) {
            if (_commitments[round][i] != bytes32(0)) mask |= uint128(uint256(1) << i);
        }
    }

    /// @notice Rounds trainer `index` was benign in, among finalized rounds.
    function benignRounds(uint256 index) external view returns (uint32 count) {
        for (uint32 round = 1; round <= currentRound; ++round) {
            if (_rounds[round].benignMask >> index & 1 == 1) ++count;
        }
    }

    function rewardSchedule() external view returns (uint16[] memory thresholds, uint256[] memory pools) {
        return (_accuracyThresholds, _rewardPools);
    }

    function isVerified() external view returns (bool) {
        return roundVerifier != address(0) && settlementVerifier != address(0);
    }

    function _toField(int256 value) private pure returns (uint256) {
        // EZKL's felt encoding of a signed value: negatives wrap to FIELD - |value|.
        if (value >= 0) return uint256(value) % FIELD;
        uint256 magnitude = uint256(-(value + 1)) + 1; // no overflow at type(int256).min
        return (FIELD - (magnitude % FIELD)) % FIELD;
    }
}
