// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title The fedmarket data market's types, events and errors.
/// @notice What a client, an indexer or an auditor needs to read a market: {DataMarket} is the one
/// implementation, deployed as clones by {MarketFactory}.
interface IDataMarket {
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
        bytes32 dataCommitment; // commitment to the owner's data, a BN254 field element
        address aggregator;
        bytes32 aggregatorKey; // X25519 public key trainers seal their updates to
        uint32 trainers; // L, at most MAX_TRAINERS
        uint32 rounds; // T, at most MAX_ROUNDS
        uint64 registrationDeadline; // unix seconds, at most MAX_REGISTRATION_PERIOD ahead
        uint64 revealWindow; // seconds trainers have to reveal their seeds once L registered
        uint64 roundDuration; // seconds a round accepts submissions
        uint64 aggregatorWindow; // seconds the aggregator has for each of its steps
        uint256 participationReward; // R_p, paid per benign round
        uint256 aggregatorFee;
        uint256 trainerBond; // paid at registration, returned at reveal, the owner's if never revealed
        uint16[] accuracyThresholds; // basis points, strictly ascending
        uint256[] rewardPools; // alpha for reaching the threshold at the same index, non-decreasing
        address roundVerifier; // zero: rounds are not proven; else an adapter the factory deployed
        address settlementVerifier; // zero: settlement is not proven; else an adapter the factory deployed
    }

    /// One slot per round: written when the round opens, updated at finalization.
    struct Round {
        uint64 deadline; // submissions close; zero: not opened
        bool finalized;
        bool verified;
        uint128 benignMask; // bit i: trainer i kept by the outlier rule
    }

    /// Why the aggregator left a submission out of its round (contracts/README.md, "Exclusions").
    /// Reasons from `KeyMismatch` on carry the submission's AEAD key as evidence: with it anyone
    /// re-checks the claim against the sealed bytes under the submission's CID.
    enum ExclusionReason {
        None,
        Unavailable, // no bytes under the CID could be read by the round's end
        Replayed, // the CID was submitted before in this market
        BadEnvelope, // not a sealed-update envelope of the current version
        KeyMismatch, // the key derived for the envelope is not the one its header commits to
        DoesNotOpen, // the committed key does not open it for this market, round and trainer
        MalformedUpdate, // it opens, but is not an update the task accepts
        CommitmentMismatch, // it opens to a valid update whose commitment is not the one on chain
        MaskedMalformed // secure aggregation: the public masked bytes are not a masked model for this round
    }

    struct Exclusion {
        uint32 index; // the trainer's registration index
        ExclusionReason reason;
        bytes32 key; // the submission's AEAD key from `KeyMismatch` on, zero before
    }

    event MarketInitialized(address indexed owner, uint256 deposit, Spec spec);
    event TrainerRegistered(
        address indexed trainer, uint32 index, bytes32 encryptionKey, bytes32 seedCommitment, bytes32 dataSummaryCid
    );
    event SeedRevealStarted(uint64 revealDeadline);
    event SeedRevealed(address indexed trainer, uint32 index, bytes32 seed);
    /// @param seedBlock the block whose hash fixes the split seed with the revealed seeds
    /// @param bondsForfeited the bonds of trainers who never revealed, credited to the owner
    event TrainingStarted(uint128 activeMask, uint64 aggregatorDeadline, uint64 seedBlock, uint256 bondsForfeited);
    event SplitSeedFixed(bytes32 splitSeed);
    event RoundOpened(uint32 indexed round, bytes32 modelCid, bytes32 modelCommitment, uint64 deadline);
    event UpdateSubmitted(uint32 indexed round, address indexed trainer, bytes32 cid, bytes32 commitment);
    /// @param key the submission's AEAD key (evidence), zero for reasons that carry none
    event SubmissionExcluded(
        uint32 indexed round, address indexed trainer, uint32 index, ExclusionReason reason, bytes32 key
    );
    event RoundFinalized(
        uint32 indexed round, bytes32 aggregateCid, bytes32 aggregateCommitment, uint128 benignMask, bool verified
    );
    /// A round's contributions and the final model's accuracy on that round's test chunk, proven.
    event ContributionsProven(uint32 indexed round, uint16 accuracyBps, int256[] contributions);
    event Settled(
        uint16 accuracyBps,
        uint256 rewardPool,
        int256[] contributions,
        uint256[] payouts,
        uint256 aggregatorFee,
        uint256 ownerRefund,
        bool verified
    );
    /// @param ownerRefund the escrow, plus the bonds of registered trainers if the market was
    /// cancelled after its reveal opened (none revealed); cancelled in registration, every
    /// registered trainer gets its bond back instead.
    event MarketCancelled(uint256 ownerRefund);
    event MarketAborted(uint32 round, uint256[] payouts, uint256 ownerRefund);
    event Withdrawn(address indexed account, uint256 amount);

    // creation
    error InvalidOwner();
    error InvalidTrainerCount(uint32 trainers);
    error InvalidRoundCount(uint32 rounds);
    error InvalidAggregator();
    error InvalidAggregatorKey();
    error InvalidSpecCid();
    error InvalidDataCommitment();
    error InvalidRegistrationDeadline(uint64 deadline);
    error InvalidWindow(uint64 revealWindow, uint64 roundDuration, uint64 aggregatorWindow);
    error InvalidSchedule();
    error InvalidThreshold(uint256 index, uint16 threshold);
    error DecreasingRewardPool(uint256 index);
    error InvalidBond(uint256 bond);
    error InsufficientDeposit(uint256 required, uint256 provided);
    error DepositTooLarge(uint256 deposit);
    // phases and parties
    error WrongPhase(Phase expected, Phase actual);
    error CannotForceSettle(Phase phase);
    error NotStalled(uint64 deadline);
    error NotRegistered(address account);
    error NotActive(address trainer);
    error NotAggregator(address account);
    error PartyCannotTrain(address account);
    // registration and seeds
    error RegistrationClosed(uint64 deadline);
    error AlreadyRegistered(address trainer);
    error WrongBond(uint256 required, uint256 provided);
    error InvalidEncryptionKey();
    error InvalidSeedCommitment();
    error SeedMismatch(address trainer);
    error AlreadyRevealed(address trainer);
    error RevealStillOpen(uint64 deadline);
    error RevealClosed(uint64 deadline);
    error SplitSeedNotYet(uint64 seedBlock);
    error SplitSeedExpired(uint64 seedBlock);
    error SplitSeedAlreadyFixed();
    // rounds
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
    error NothingToExclude(uint32 round, uint256 index);
    error AlreadyExcluded(uint32 round, uint256 index);
    error InvalidExclusion(uint256 index, ExclusionReason reason, bytes32 key);
    error ExcludedSubmissionKept(uint32 round, uint128 overlap);
    // settlement
    error ContributionsLengthMismatch(uint256 expected, uint256 provided);
    error ContributionOutOfRange(uint256 index, int256 contribution);
    error ContributionForNeverBenignTrainer(address trainer);
    error InvalidAccuracy(uint16 accuracyBps);
    error ProofRejected();
    error SettlementNotProven();
    error ContributionsOutOfOrder(uint32 round, uint32 expected);
    error ContributionsNotProven(uint32 proven, uint32 rounds);
    error AccuracyNotProven(uint16 proven);
    error ContributionNotProven(uint256 index, int256 proven);
    // payments
    error NothingToWithdraw(address account);
}
