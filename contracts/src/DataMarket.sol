// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IDataMarket} from "./IDataMarket.sol";
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
contract DataMarket is IDataMarket, Initializable, ReentrancyGuardTransient {
    using SafeCast for uint256;

    struct Member {
        uint16 slot; // registration index + 1; zero means not registered
        bool revealed;
        bool bondClaimed;
    }

    uint256 public constant MAX_TRAINERS = 128; // one bit per trainer in a uint128 mask
    /// Bounds the loops over rounds (settlement and forced settlement count benign rounds):
    /// tests/gas: settle and forceSettle at MAX_TRAINERS x MAX_ROUNDS stay far under a block.
    uint256 public constant MAX_ROUNDS = 1_000;
    uint256 private constant COUNT_BITS = 10; // 2^COUNT_BITS > MAX_ROUNDS: a count's bits
    /// Every window, and the registration period, is bounded: past its end a forced exit opens,
    /// and an unbounded one would lock the escrow.
    uint64 public constant MAX_WINDOW = 30 days;
    uint64 public constant MAX_REGISTRATION_PERIOD = 90 days;
    /// Contributions reach the settlement proof as field elements: bounding them keeps one
    /// encoding per value (c and c - FIELD would be the same instance).
    int256 public constant MAX_CONTRIBUTION = type(int64).max;
    uint16 public constant BPS = 10_000;
    /// Order of the BN254 scalar field: commitments and proof instances are elements of it.
    uint256 public constant FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617;

    // slot: everything `submit` needs besides the round and the member
    address public owner;
    Phase public phase;
    uint32 public currentRound; // 1-based; 0 before the first round opens
    uint16 public finalAccuracyBps;
    uint40 public creationBlock; // where readers of this market's logs start
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
    // slot: the bond and the block whose hash enters the split seed
    uint128 public trainerBond;
    uint64 public seedBlock;
    address public factory; // the factory that created this market

    uint256 public participationReward;
    uint256 public aggregatorFee;
    uint256 public totalWithdrawn;
    bytes32 public specCid;
    bytes32 public dataCid;
    bytes32 public dataCommitment;
    bytes32 public aggregatorKey;
    bytes32 public splitSeed; // fixes the owner's validation/test split; zero until fixed
    bytes32 public modelCommitment; // the current global model: initial, then each aggregate
    bytes32 private _seedXor;
    address public roundVerifier;
    address public settlementVerifier;
    uint16[] private _accuracyThresholds;
    uint256[] private _rewardPools;
    // slot: a proven settlement's progress, round by round
    uint32 public provenRounds; // rounds whose contributions are proven, from round 1 on
    uint64 public provenAccuracySum; // their accuracies' sum, in bps (< 2^64 for MAX_ROUNDS)
    /// Per trainer, the proven rounds' contributions summed: each is within +-MAX_CONTRIBUTION,
    /// so their sum cannot overflow.
    int256[MAX_TRAINERS] private _provenContributions;

    address[] private _trainers;
    mapping(address => Member) private _members;
    mapping(address => bytes32) public encryptionKeyOf;
    mapping(address => bytes32) public seedCommitmentOf;
    mapping(uint32 => Round) private _rounds;
    mapping(uint32 => mapping(uint256 => bytes32)) private _commitments; // round => index => commitment
    mapping(uint32 => uint128) private _excludedMasks; // round => bit i: trainer i's submission excluded
    uint128[MAX_TRAINERS] private _trainerOwed; // by registration index, two per slot

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

    /// @notice Called once by the factory in the same transaction that creates the clone; the
    /// factory has checked the verifiers (adapters it deployed for this shape).
    function initialize(address owner_, Spec calldata spec) external payable initializer {
        if (owner_ == address(0)) revert InvalidOwner();
        _checkSpec(spec);
        uint256 required = maxPayout(spec);
        if (msg.value < required) revert InsufficientDeposit(required, msg.value);
        if (msg.value > type(uint128).max) revert DepositTooLarge(msg.value); // payouts are stored as uint128

        owner = owner_;
        creationBlock = block.number.toUint40();
        factory = msg.sender;
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
        trainerBond = uint128(spec.trainerBond); // bounded by _checkSpec
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
        if (spec.trainers == 0 || spec.trainers > MAX_TRAINERS) revert InvalidTrainerCount(spec.trainers);
        if (spec.rounds == 0 || spec.rounds > MAX_ROUNDS) revert InvalidRoundCount(spec.rounds);
        if (spec.aggregator == address(0)) revert InvalidAggregator();
        if (spec.aggregatorKey == bytes32(0)) revert InvalidAggregatorKey();
        if (spec.specCid == bytes32(0) || spec.dataCid == bytes32(0)) revert InvalidSpecCid();
        // one encoding: it reaches the settlement proof as an instance
        if (uint256(spec.dataCommitment) >= FIELD) revert InvalidDataCommitment();
        if (spec.registrationDeadline <= block.timestamp || spec.registrationDeadline > block.timestamp + MAX_REGISTRATION_PERIOD) {
            revert InvalidRegistrationDeadline(spec.registrationDeadline);
        }
        if (!_windowOk(spec.revealWindow) || !_windowOk(spec.roundDuration) || !_windowOk(spec.aggregatorWindow)) {
            revert InvalidWindow(spec.revealWindow, spec.roundDuration, spec.aggregatorWindow);
        }
        if (spec.trainerBond > type(uint96).max) revert InvalidBond(spec.trainerBond);
        if (spec.accuracyThresholds.length != spec.rewardPools.length) revert InvalidSchedule();
        for (uint256 i = 0; i < spec.accuracyThresholds.length; ++i) {
            uint16 threshold = spec.accuracyThresholds[i];
            if (threshold > BPS || (i > 0 && threshold <= spec.accuracyThresholds[i - 1])) {
                revert InvalidThreshold(i, threshold);
            }
            // a higher accuracy never pays a smaller pool
            if (i > 0 && spec.rewardPools[i] < spec.rewardPools[i - 1]) revert DecreasingRewardPool(i);
        }
    }

    function _windowOk(uint64 window) private pure returns (bool) {
        return window != 0 && window <= MAX_WINDOW;
    }

    // ---------------------------------------------------------------- registration and seeds

    /// @notice Join the market, paying the trainer bond (returned once the seed is revealed; the
    /// owner's if it never is, so taking a seat without training costs the squatter). The
    /// `encryptionKey` is the X25519 public key the aggregator uses to open this trainer's sealed
    /// updates; `seedCommitment` is {seedCommitmentFor} of a random seed revealed once L trainers
    /// joined; `dataSummaryCid` is the digest of the trainer's data validation summary (counts and
    /// pass/fail, no rows), published in the event only. The sender's address receives the
    /// payout. The owner and the aggregator cannot train.
    function register(bytes32 encryptionKey, bytes32 seedCommitment, bytes32 dataSummaryCid)
        external
        payable
        inPhase(Phase.Registration)
    {
        if (block.timestamp > registrationDeadline) revert RegistrationClosed(registrationDeadline);
        if (msg.sender == owner || msg.sender == aggregator) revert PartyCannotTrain(msg.sender);
        if (_members[msg.sender].slot != 0) revert AlreadyRegistered(msg.sender);
        if (msg.value != trainerBond) revert WrongBond(trainerBond, msg.value);
        if (encryptionKey == bytes32(0)) revert InvalidEncryptionKey();
        if (seedCommitment == bytes32(0)) revert InvalidSeedCommitment();
        if (dataSummaryCid == bytes32(0)) revert InvalidCid();

        _trainers.push(msg.sender);
        uint256 count = _trainers.length;
        _members[msg.sender] = Member(count.toUint16(), false, false);
        encryptionKeyOf[msg.sender] = encryptionKey;
        seedCommitmentOf[msg.sender] = seedCommitment;
        emit TrainerRegistered(msg.sender, (count - 1).toUint32(), encryptionKey, seedCommitment, dataSummaryCid);

        if (count == trainerCount) {
            phase = Phase.SeedReveal;
            revealDeadline = uint64(block.timestamp) + revealWindow; // both bounded
            emit SeedRevealStarted(revealDeadline);
        }
    }

    /// @notice The commitment a trainer registers for `seed`: binding market and trainer, so a
    /// commitment cannot be copied from another trainer or market.
    function seedCommitmentFor(address trainer, bytes32 seed) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), trainer, seed));
    }

    /// @notice Reveal the seed committed at registration, which also makes the bond withdrawable.
    /// Trainers who do not reveal before the deadline are excluded: they cannot submit, earn
    /// nothing and lose their bond to the owner.
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
    /// if none did, the market is cancelled and the owner refunded (with their bonds).
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
        // The split seed mixes the revealed seeds with the hash of this block, which nobody
        // knows when they decide to reveal or withhold: the last revealers can no longer pick
        // among the seeds their choices give (contracts/README.md states the residual bias).
        seedBlock = uint64(block.number);
        uint256 forfeited = trainerBond * (_trainers.length - revealedCount);
        if (forfeited != 0) _ownerOwed += forfeited.toUint128();
        uint64 deadline = uint64(block.timestamp) + aggregatorWindow;
        aggregatorDeadline = deadline;
        emit TrainingStarted(activeMask, deadline, uint64(block.number), forfeited);
    }

    /// @notice Fix the split seed from the revealed seeds and the hash of `seedBlock`, in any
    /// later block while that hash is readable (256 blocks); the aggregator's first `openRound`
    /// does it too. Past that, no round can open and the market ends by `forceSettle`.
    function fixSplitSeed() external inPhase(Phase.Training) {
        if (splitSeed != bytes32(0)) revert SplitSeedAlreadyFixed();
        _fixSplitSeed();
    }

    function _fixSplitSeed() private {
        uint64 anchor = seedBlock;
        if (block.number <= anchor) revert SplitSeedNotYet(anchor);
        if (block.number > anchor + 256) revert SplitSeedExpired(anchor); // its hash is gone
        // slither-disable-next-line weak-prng
        bytes32 seed = keccak256(abi.encode(block.chainid, address(this), _seedXor, blockhash(anchor)));
        splitSeed = seed;
        emit SplitSeedFixed(seed);
    }

    /// @notice The owner's refund when registration closes short of L trainers (anyone may call);
    /// every registered trainer gets its bond back.
    function cancel() external nonReentrant inPhase(Phase.Registration) {
        if (block.timestamp <= registrationDeadline) revert NotStalled(registrationDeadline);
        _cancel();
    }

    function _cancel() private {
        // from the reveal (nobody revealed): every bond is the owner's; from registration, each
        // trainer's own (see _bondDue)
        uint256 bonds = phase == Phase.SeedReveal ? trainerBond * _trainers.length : 0;
        phase = Phase.Cancelled;
        uint256 refund = _undistributed;
        _undistributed = 0;
        _ownerOwed += (refund + bonds).toUint128();
        emit MarketCancelled(refund + bonds);
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
        if (splitSeed == bytes32(0)) _fixSplitSeed();
        bytes32 commitment = modelCommitment;
        if (previous == 0) {
            if (initialModelCommitment == bytes32(0) || uint256(initialModelCommitment) >= FIELD) {
                revert InvalidCommitment();
            }
            commitment = initialModelCommitment;
            modelCommitment = commitment;
        }

        uint32 round = previous + 1;
        uint64 deadline = uint64(block.timestamp) + roundDuration; // windows are bounded at creation
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

    /// @notice Leave submissions the aggregator cannot use out of round `round`, each with its
    /// reason and, from `KeyMismatch` on, the submission's AEAD key as evidence (one per
    /// submission, so publishing it opens that submission alone). An excluded slot counts as
    /// absent in the round's and the settlement's proof instances and earns nothing this round.
    /// What the chain checks: the trainer submitted, is excluded once, and the evidence is
    /// present exactly when the reason carries it; the rest anyone re-checks from the event and
    /// the store (`fedmarket audit`, contracts/README.md "Exclusions").
    function exclude(uint32 round, Exclusion[] calldata exclusions)
        external
        onlyAggregator
        inPhase(Phase.Training)
        nonReentrant
    {
        if (round != currentRound || round == 0 || _rounds[round].finalized) revert RoundNotOpen(round);
        if (block.timestamp > aggregatorDeadline) revert AggregatorWindowClosed(aggregatorDeadline);
        uint256 n = trainerCount;
        uint128 excluded = _excludedMasks[round];
        // every entry that does not revert sets a new bit of `excluded`: at most L iterations
        for (uint256 k = 0; k < exclusions.length; ++k) {
            Exclusion calldata e = exclusions[k];
            uint256 i = e.index;
            if (i >= n || _commitments[round][i] == bytes32(0)) revert NothingToExclude(round, i);
            uint128 bit = uint128(uint256(1) << i); // i < L <= 128
            if (excluded & bit != 0) revert AlreadyExcluded(round, i);
            // the reasons about a sealed update carry its key; MaskedMalformed's bytes are public
            bool keyed = e.reason >= ExclusionReason.KeyMismatch && e.reason != ExclusionReason.MaskedMalformed;
            if (e.reason == ExclusionReason.None || keyed != (e.key != bytes32(0))) {
                revert InvalidExclusion(i, e.reason, e.key);
            }
            excluded |= bit;
            emit SubmissionExcluded(round, _trainers[i], uint32(i), e.reason, e.key);
        }
        _excludedMasks[round] = excluded;
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
        uint128 overlap = benignMask & _excludedMasks[round];
        if (overlap != 0) revert ExcludedSubmissionKept(round, overlap);

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
    /// [domain, round, cur_0..cur_{L-1}, modelCommitment, aggregateCommitment, mask, previous mask],
    /// cur_i zero where trainer i did not submit or was excluded (the circuit's absent slot).
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
        _slotCommitments(round, instances, 2);
        instances[n + 2] = uint256(startModel);
        instances[n + 3] = uint256(aggregateCommitment);
        instances[n + 4] = benignMask;
        instances[n + 5] = round > 1 ? _rounds[round - 1].benignMask : 0;
    }

    /// @notice Binds a proof to this chain, this market and one step (round number, or
    /// `type(uint32).max - round` for round `round`'s contribution proof), so a proof cannot be
    /// replayed elsewhere.
    function domain(uint32 step) public view returns (uint256) {
        return uint256(keccak256(abi.encode(block.chainid, address(this), step))) % FIELD;
    }

    /// Each trainer's commitment in `round` from `out[at]` on, zero for an excluded submission:
    /// the proofs treat it as absent, so the aggregator proves the round without it.
    function _slotCommitments(uint32 round, uint256[] memory out, uint256 at) private view {
        uint256 n = trainerCount;
        uint256 excluded = _excludedMasks[round];
        for (uint256 i = 0; i < n; ++i) {
            if ((excluded >> i) & 1 == 0) out[at + i] = uint256(_commitments[round][i]);
        }
    }

    // ---------------------------------------------------------------- settlement

    /// @notice The seed the settlement's RLOO subsets are drawn from: fixed by the trainers'
    /// split seed and the final model, so the aggregator cannot choose it.
    function rlooSeed() public view returns (bytes32) {
        return keccak256(abi.encode(splitSeed, modelCommitment));
    }

    /// @notice Public instances of round `round`'s contribution proof (layout in contracts/README.md):
    /// [domain, dataCommitment, final model commitment, round's RLOO seed, accuracy, round's mask,
    ///  round, round's commitments (zero where excluded)..., contributions...]
    function contributionInstances(uint32 round, uint16 accuracyBps, int256[] calldata contributions)
        public
        view
        returns (uint256[] memory instances)
    {
        uint256 n = trainerCount;
        uint256 m = contributions.length;
        instances = new uint256[](n + m + 7);
        instances[0] = domain(type(uint32).max - round);
        instances[1] = uint256(dataCommitment); // < FIELD, checked at creation
        instances[2] = uint256(modelCommitment);
        // slither-disable-next-line weak-prng
        instances[3] = uint256(keccak256(abi.encode(rlooSeed(), round))) % FIELD;
        instances[4] = accuracyBps;
        instances[5] = _rounds[round].benignMask;
        instances[6] = round;
        _slotCommitments(round, instances, 7);
        for (uint256 i = 0; i < m; ++i) {
            instances[7 + n + i] = _toField(i, contributions[i]);
        }
    }

    /// @notice In a market whose settlement is proven: record round `round`'s RLOO contributions
    /// and the final model's accuracy on that round's test chunk, once the settlement verifier
    /// accepts `proof` for {contributionInstances}. Rounds are proven in order, all before
    /// {settle}, which pays their sums: every round counts, as in sources/004 eq. (2). Each
    /// proven round reopens the aggregator's window, so T proofs get T windows, and no more.
    function proveContributions(
        uint32 round,
        uint16 accuracyBps,
        int256[] calldata contributions,
        bytes calldata proof
    ) external onlyAggregator inPhase(Phase.Settlement) nonReentrant {
        address verifier = settlementVerifier;
        if (verifier == address(0)) revert SettlementNotProven();
        if (block.timestamp > aggregatorDeadline) revert AggregatorWindowClosed(aggregatorDeadline);
        uint32 next = provenRounds + 1;
        if (round != next || round > roundCount) revert ContributionsOutOfOrder(round, next);
        if (accuracyBps > BPS) revert InvalidAccuracy(accuracyBps);
        uint256 n = trainerCount;
        if (contributions.length != n) revert ContributionsLengthMismatch(n, contributions.length);

        // Effects first, then the verifier call: a rejected proof reverts all of it. Values out
        // of +-MAX_CONTRIBUTION are refused when the instances are built.
        for (uint256 i = 0; i < n; ++i) {
            int256 c = contributions[i];
            if (c != 0) _provenContributions[i] += c;
        }
        provenRounds = next;
        provenAccuracySum += accuracyBps;
        aggregatorDeadline = uint64(block.timestamp) + aggregatorWindow;
        emit ContributionsProven(round, accuracyBps, contributions);
        if (!_accepts(verifier, proof, contributionInstances(round, accuracyBps, contributions))) {
            revert ProofRejected();
        }
    }

    /// @notice Credit every payout by eq. (5) of sources/004 and refund the owner the rest.
    /// In a market whose settlement is proven, every round's contributions must be proven first
    /// ({proveContributions}) and the claim must be their sums and the mean of their accuracies.
    /// @param accuracyBps final test accuracy in basis points; picks alpha from the schedule.
    /// @param contributions one signed contribution per trainer, in registration order.
    function settle(uint16 accuracyBps, int256[] calldata contributions)
        external
        onlyAggregator
        inPhase(Phase.Settlement)
        nonReentrant
    {
        if (block.timestamp > aggregatorDeadline) revert AggregatorWindowClosed(aggregatorDeadline);
        if (accuracyBps > BPS) revert InvalidAccuracy(accuracyBps);
        uint256 n = trainerCount;
        if (contributions.length != n) revert ContributionsLengthMismatch(n, contributions.length);
        bool verified = settlementVerifier != address(0);
        if (verified) _checkProven(accuracyBps, contributions);

        uint256[] memory payouts = _benignRoundCounts();
        uint256 positiveSum = 0;
        for (uint256 i = 0; i < n; ++i) {
            int256 c = contributions[i];
            if (c > MAX_CONTRIBUTION || c < -MAX_CONTRIBUTION) revert ContributionOutOfRange(i, c);
            if (c > 0) {
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
        _aggregatorOwed = aggregatorFee.toUint128();
        uint256 refund = _undistributed - paid - aggregatorFee; // cannot underflow: the deposit covers maxPayout
        _ownerOwed += refund.toUint128();
        _undistributed = 0;
        phase = Phase.Settled;
        finalAccuracyBps = accuracyBps;
        emit Settled(accuracyBps, pool, contributions, payouts, aggregatorFee, refund, verified);
    }

    /// @dev A proven settlement's claim: every round proven, the mean of their accuracies (each
    /// the final model's on one round's chunk of equal size) and the sums of their contributions.
    function _checkProven(uint16 accuracyBps, int256[] calldata contributions) private view {
        uint32 rounds = roundCount;
        if (provenRounds != rounds) revert ContributionsNotProven(provenRounds, rounds);
        uint16 accuracy = uint16(provenAccuracySum / rounds);
        if (accuracyBps != accuracy) revert AccuracyNotProven(accuracy);
        for (uint256 i = 0; i < contributions.length; ++i) {
            int256 proven = _provenContributions[i];
            if (contributions[i] != proven) revert ContributionNotProven(i, proven);
        }
    }

    /// @dev A verifier's answer, with a revert read as a rejection: EZKL's generated verifiers
    /// revert on a proof they reject, and a `proof` argument that does not decode reverts inside
    /// an adapter; either way the market reports `ProofRejected`.
    function _accepts(address verifier, bytes calldata proof, uint256[] memory instances) private returns (bool) {
        if (verifier.code.length == 0) return false; // a call to it would "succeed" with no answer
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
        if (phase != Phase.Training && phase != Phase.Settlement) revert CannotForceSettle(phase);
        if (block.timestamp <= aggregatorDeadline) revert NotStalled(aggregatorDeadline);
        uint256[] memory payouts = _benignRoundCounts();
        uint256 paid = 0;
        for (uint256 i = 0; i < payouts.length; ++i) {
            payouts[i] *= participationReward;
            paid += payouts[i];
        }
        _creditTrainers(payouts);
        uint256 refund = _undistributed - paid;
        _ownerOwed += refund.toUint128();
        _undistributed = 0;
        phase = Phase.Aborted;
        emit MarketAborted(currentRound, payouts, refund);
    }

    /// How many finalized rounds each trainer was benign in (an open round has an empty mask),
    /// with bit-sliced counters: bit i of `planes[k]` is bit k of trainer i's count, and each
    /// round's mask is added to all L counters at once by a ripple carry through the planes. A
    /// round costs its one storage read and a few word operations, whatever L.
    function _benignRoundCounts() private view returns (uint256[] memory counts) {
        uint256[] memory planes = new uint256[](COUNT_BITS);
        uint32 last = currentRound;
        for (uint32 round = 1; round <= last; ++round) {
            uint256 carry = _rounds[round].benignMask;
            for (uint256 k = 0; carry != 0; ++k) {
                (planes[k], carry) = (planes[k] ^ carry, planes[k] & carry); // k < COUNT_BITS: counts <= MAX_ROUNDS
            }
        }
        counts = new uint256[](trainerCount);
        for (uint256 k = 0; k < COUNT_BITS; ++k) {
            for ((uint256 plane, uint256 i) = (planes[k], 0); plane != 0; (plane, i) = (plane >> 1, i + 1)) {
                if (plane & 1 == 1) counts[i] += 1 << k;
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
        Member memory member = _members[msg.sender];
        if (member.slot != 0) {
            amount += _trainerOwed[member.slot - 1];
            _trainerOwed[member.slot - 1] = 0;
            if (_bondDue(member)) {
                amount += trainerBond;
                _members[msg.sender].bondClaimed = true;
            }
        }
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        totalWithdrawn += amount;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    function _creditTrainers(uint256[] memory payouts) private {
        for (uint256 i = 0; i < payouts.length; ++i) {
            if (payouts[i] != 0) _trainerOwed[i] = payouts[i].toUint128(); // deposit < 2^128 wei
        }
    }

    /// A trainer's bond is its own again once it revealed, or when the market was cancelled in
    /// registration; forfeited bonds were credited to the owner when training started or the
    /// reveal ended with no one.
    function _bondDue(Member memory member) private view returns (bool) {
        if (member.bondClaimed || trainerBond == 0) return false;
        // cancelled with fewer than L registered: in registration, before any reveal could start
        return member.revealed || (phase == Phase.Cancelled && _trainers.length < trainerCount);
    }

    /// Bonds made withdrawable so far (returned or forfeited), in wei.
    function _bondsCredited() private view returns (uint256) {
        Phase p = phase;
        if (p == Phase.Registration) return 0;
        if (p == Phase.SeedReveal) return trainerBond * revealedCount;
        return trainerBond * _trainers.length; // each returned or the owner's
    }

    // ---------------------------------------------------------------- views

    /// @notice What `account` can withdraw now.
    function owed(address account) external view returns (uint256 amount) {
        if (account == owner) amount += _ownerOwed;
        if (account == aggregator) amount += _aggregatorOwed;
        Member memory member = _members[account];
        if (member.slot != 0) {
            amount += _trainerOwed[member.slot - 1];
            if (_bondDue(member)) amount += trainerBond;
        }
    }

    /// @notice Everything ever made withdrawable, bonds included.
    function totalCredited() public view returns (uint256) {
        return deposit - _undistributed + _bondsCredited();
    }

    /// @notice Credited and not yet withdrawn.
    function totalOwed() external view returns (uint256) {
        return totalCredited() - totalWithdrawn;
    }

    /// @notice Escrow not yet credited to anyone.
    function undistributed() external view returns (uint256) {
        return _undistributed;
    }

    /// @notice Bonds received and not yet credited to anyone (returned or forfeited).
    function bondsHeld() external view returns (uint256) {
        return trainerBond * _trainers.length - _bondsCredited();
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

    /// @notice Bit i set: trainer i's submission in `round` was excluded ({exclude}).
    function excludedMask(uint32 round) external view returns (uint128) {
        return _excludedMasks[round];
    }

    /// @notice Bit i set: trainer i submitted in `round`.
    function submittedMask(uint32 round) external view returns (uint128 mask) {
        uint256 n = _trainers.length;
        for (uint256 i = 0; i < n; ++i) {
            if (_commitments[round][i] != bytes32(0)) mask |= uint128(uint256(1) << i);
        }
    }

    /// @notice Rounds trainer `index` was benign in, among finalized rounds.
    function benignRounds(uint256 index) external view returns (uint32 count) { // bounded by MAX_ROUNDS
        for (uint32 round = 1; round <= currentRound; ++round) {
            if (_rounds[round].benignMask >> index & 1 == 1) ++count;
        }
    }

    function rewardSchedule() external view returns (uint16[] memory thresholds, uint256[] memory pools) {
        return (_accuracyThresholds, _rewardPools);
    }

    /// EZKL's felt encoding of a signed value, negatives as FIELD - |value|: one element per
    /// value only within +-MAX_CONTRIBUTION, so anything outside is refused, never reduced.
    function _toField(uint256 index, int256 value) private pure returns (uint256) {
        if (value > MAX_CONTRIBUTION || value < -MAX_CONTRIBUTION) revert ContributionOutOfRange(index, value);
        return value >= 0 ? uint256(value) : FIELD - uint256(-value);
    }
}
