// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "./DataMarket.sol";
import {IDataMarket} from "./IDataMarket.sol";
import {IMarketFactory} from "./IMarketFactory.sol";
import {ISecureAggregation} from "./ISecureAggregation.sol";

/// @title The secure-aggregation board of the markets one factory creates.
/// @notice Three steps per market, read by the trainers' and the aggregator's clients and by
/// `fedmarket audit`: {postKeys} once per trainer between rounds, {openReveals} by the aggregator
/// once a round's submissions and exclusions are fixed, {revealShares} once per holder and round;
/// and between rounds {complain} by a holder against a dealer, {answer} by that dealer.
/// It moves no funds and changes nothing in the market: the market's own deadlines bound every
/// round (past them the market settles without the round), so the board needs no window.
contract SecureAggregation is ISecureAggregation {
    IMarketFactory public immutable factory;
    mapping(address => uint128) public keyedMask; // market => bit i: trainer i posted its keys
    mapping(address => mapping(uint32 => RoundReveals)) private _rounds;
    mapping(address => mapping(uint32 => uint128)) public complainedMask; // market => dealer => bit h: h complained
    mapping(address => mapping(uint32 => uint128)) public answeredMask; // market => dealer => bit h: answered

    constructor() {
        factory = IMarketFactory(msg.sender);
    }

    /// @notice Publish the key bundle of the caller for `market`: its round mask public keys and
    /// its sealed shares, stored under `cid`. Only between rounds (before the first, or once the
    /// current one is finalized), so a round's participants are fixed when it opens.
    function postKeys(address market, bytes32 cid) external {
        (DataMarket m, uint32 round) = _betweenRounds(market);
        if (cid == bytes32(0)) revert InvalidCid();
        uint256 index = m.trainerIndex(msg.sender);
        uint128 bit = uint128(uint256(1) << index); // index < L <= 128
        uint128 keyed = keyedMask[market];
        if (keyed & bit != 0) revert KeysAlreadyPosted(market, msg.sender);
        keyedMask[market] = keyed | bit;
        emit KeysPosted(market, msg.sender, uint32(index), round + 1, cid);
    }

    /// @notice Say that `dealer`'s shares for the caller fail its commitments (or do not open):
    /// once per holder and dealer, between rounds. Until the dealer answers, readers leave it out
    /// of every round opened after this.
    function complain(address market, uint32 dealer) external {
        (DataMarket m, uint32 round) = _betweenRounds(market);
        if (keyedMask[market] >> dealer & 1 == 0) revert NotKeyed(market, dealer);
        uint32 holder = uint32(m.trainerIndex(msg.sender));
        if (holder == dealer) revert OwnKeys(market, msg.sender);
        uint128 bit = uint128(uint256(1) << holder);
        uint128 complained = complainedMask[market][dealer];
        if (complained & bit != 0) revert AlreadyComplained(market, dealer, holder);
        complainedMask[market][dealer] = complained | bit;
        emit Complained(market, dealer, holder, round + 1);
    }

    /// @notice Answer `holder`'s complaint with its shares in the clear, stored under `cid`: once,
    /// by the dealer, between rounds. Readers check the shares against the dealer's commitments.
    function answer(address market, uint32 holder, bytes32 cid) external {
        (DataMarket m, uint32 round) = _betweenRounds(market);
        if (cid == bytes32(0)) revert InvalidCid();
        uint32 dealer = uint32(m.trainerIndex(msg.sender));
        uint128 bit = uint128(uint256(1) << holder);
        if (complainedMask[market][dealer] & bit == 0) revert NoComplaint(market, dealer, holder);
        uint128 answered = answeredMask[market][dealer];
        if (answered & bit != 0) revert AlreadyAnswered(market, dealer, holder);
        answeredMask[market][dealer] = answered | bit;
        emit Answered(market, dealer, holder, round + 1, cid);
    }

    /// @notice Fix round `round`'s survivors and let holders reveal: the aggregator calls it once
    /// every active trainer submitted or the submission deadline passed, after its exclusions.
    function openReveals(address market, uint32 round) external {
        DataMarket m = _training(market);
        if (msg.sender != m.aggregator()) revert NotAggregator(market, msg.sender);
        if (round == 0 || round != m.currentRound()) revert RoundNotOpen(market, round);
        IDataMarket.Round memory r = m.getRound(round);
        if (r.finalized) revert RoundNotOpen(market, round);
        uint128 submitted = m.submittedMask(round);
        if (block.timestamp <= r.deadline && submitted != m.activeMask()) {
            revert SubmissionsStillOpen(market, round, r.deadline);
        }
        RoundReveals storage reveals = _rounds[market][round];
        if (reveals.open) revert RevealsAlreadyOpen(market, round);
        uint128 participants = keyedMask[market];
        uint128 survivors = submitted & ~m.excludedMask(round) & participants;
        reveals.open = true;
        reveals.participants = participants;
        reveals.survivors = survivors;
        emit RevealsOpened(market, round, participants, survivors);
    }

    /// @notice Publish the caller's share reveal for round `round`, stored under `cid`: once per
    /// holder and round, after {openReveals}.
    function revealShares(address market, uint32 round, bytes32 cid) external {
        RoundReveals storage reveals = _rounds[market][round];
        if (!reveals.open) revert RevealsNotOpen(market, round);
        DataMarket m = DataMarket(market);
        if (!m.isActive(msg.sender)) revert NotActive(market, msg.sender);
        if (cid == bytes32(0)) revert InvalidCid();
        uint256 index = m.trainerIndex(msg.sender);
        uint128 bit = uint128(uint256(1) << index);
        if (reveals.revealed & bit != 0) revert AlreadyRevealed(market, round, msg.sender);
        reveals.revealed |= bit;
        emit SharesRevealed(market, round, msg.sender, uint32(index), cid);
    }

    function roundReveals(address market, uint32 round) external view returns (RoundReveals memory) {
        return _rounds[market][round];
    }

    /// An active trainer of a training market while no round is open: the current round number.
    function _betweenRounds(address market) private view returns (DataMarket m, uint32 round) {
        m = _training(market);
        if (!m.isActive(msg.sender)) revert NotActive(market, msg.sender);
        round = m.currentRound();
        if (round != 0 && !m.getRound(round).finalized) revert RoundInProgress(market, round);
    }

    function _training(address market) private view returns (DataMarket m) {
        if (!factory.isMarket(market)) revert UnknownMarket(market);
        m = DataMarket(market);
        if (m.phase() != IDataMarket.Phase.Training) revert NotTraining(market);
    }
}
