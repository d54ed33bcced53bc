// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {DataMarket} from "./DataMarket.sol";
import {IDataMarket} from "./IDataMarket.sol";
import {IMarketFactory} from "./IMarketFactory.sol";
import {IVerifierFactory} from "./IVerifierFactory.sol";
import {SecureAggregation} from "./SecureAggregation.sol";

/// @title Creates fedmarket markets as clones of one implementation.
/// @notice A project owner cannot deploy its own code and call it a market: every market is a
/// minimal proxy of `implementation`, deployed here (sources/004, Remark 3). Nor can it name its
/// own verifier: a market's verifiers must be adapters `verifiers` deployed (VerifierFactory: our
/// code, which lays the market's instances out for the circuit and cannot be switched), each over
/// an EZKL verifier whose code hash it records, for the market's number of trainers. What stays to
/// check off chain is that `verifiers` runs VerifierFactory's code and that the EZKL verifier is
/// the one of the task's circuit: a trainer's client compares both (`fedmarket trainer register`).
contract MarketFactory is IMarketFactory {
    address public immutable implementation;
    /// The board where the trainers of this factory's secure-aggregation markets publish.
    address public immutable secureAggregation;
    address[] private _markets;
    mapping(address => address[]) private _marketsByOwner;
    mapping(address => bool) public isMarket;
    /// The factory whose adapters this factory's markets may name.
    IVerifierFactory public immutable verifiers;

    constructor(IVerifierFactory verifiers_) {
        if (address(verifiers_).code.length == 0) revert NoVerifierFactory(address(verifiers_));
        verifiers = verifiers_;
        implementation = address(new DataMarket());
        secureAggregation = address(new SecureAggregation());
    }

    /// @notice Deploy a market and escrow `msg.value` in it; the caller becomes its owner.
    function createMarket(IDataMarket.Spec calldata spec) external payable returns (address market) {
        IVerifierFactory.VerifierKind rounds = _checkVerifier(spec.roundVerifier, spec.trainers, true);
        _checkVerifier(spec.settlementVerifier, spec.trainers, false);
        if (spec.settlementVerifier != address(0) && rounds != IVerifierFactory.VerifierKind.Round) {
            revert SettlementNeedsHashedRounds(spec.roundVerifier);
        }
        market = Clones.clone(implementation);
        // Record first, then initialize (our own code): a failed initialization reverts it all.
        _markets.push(market);
        isMarket[market] = true;
        _marketsByOwner[msg.sender].push(market);
        emit MarketCreated(market, msg.sender, spec.aggregator, msg.value);
        DataMarket(market).initialize{value: msg.value}(msg.sender, spec);
    }

    /// @dev The kind of the adapter `verifier` (None for address zero), which `verifiers` must
    /// have deployed for `trainers` slots: a round verifier of any layout, or a settlement one.
    function _checkVerifier(address verifier, uint32 trainers, bool rounds)
        private
        view
        returns (IVerifierFactory.VerifierKind)
    {
        if (verifier == address(0)) return IVerifierFactory.VerifierKind.None;
        IVerifierFactory.VerifierInfo memory info = verifiers.verifierInfo(verifier);
        IVerifierFactory.VerifierKind kind = info.kind;
        bool fits = rounds
            ? kind == IVerifierFactory.VerifierKind.Round || kind == IVerifierFactory.VerifierKind.KzgRound
                || kind == IVerifierFactory.VerifierKind.SplitRound
            : kind == IVerifierFactory.VerifierKind.Settlement;
        if (!fits) {
            revert UnknownVerifier(
                verifier, rounds ? IVerifierFactory.VerifierKind.Round : IVerifierFactory.VerifierKind.Settlement
            );
        }
        if (info.trainers != trainers) revert VerifierShapeMismatch(verifier, info.trainers, trainers);
        return info.kind;
    }

    /// @notice What the adapter `verifier` checks (VerifierFactory.verifierInfo of `verifiers`).
    function verifierInfo(address verifier) external view returns (IVerifierFactory.VerifierInfo memory) {
        return verifiers.verifierInfo(verifier);
    }

    function markets() external view returns (address[] memory) {
        return _markets;
    }

    function marketsOf(address owner) external view returns (address[] memory) {
        return _marketsByOwner[owner];
    }
}
