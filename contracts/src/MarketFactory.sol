// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {DataMarket} from "./DataMarket.sol";
import {EzklKzgRoundVerifier} from "./EzklKzgRoundVerifier.sol";
import {EzklRoundVerifier} from "./EzklRoundVerifier.sol";
import {EzklSettlementVerifier} from "./EzklSettlementVerifier.sol";
import {IDataMarket} from "./IDataMarket.sol";
import {IMarketFactory} from "./IMarketFactory.sol";
import {IProofVerifier} from "./IProofVerifier.sol";
import {SecureAggregation} from "./SecureAggregation.sol";

/// @title Creates fedmarket markets as clones of one implementation, and the verifiers they name.
/// @notice A project owner cannot deploy its own code and call it a market: every market is a
/// minimal proxy of `implementation`, deployed here (sources/004, Remark 3). Nor can it name its
/// own verifier: a market's verifiers must be adapters this factory deployed (our code, which
/// lays the market's instances out for the circuit and cannot be switched), each over an EZKL
/// verifier whose code hash it records, for the market's number of trainers. What stays to
/// check off chain is that the EZKL verifier is the one of the task's circuit: a trainer's
/// client rebuilds the circuit and compares (`fedmarket trainer register`).
contract MarketFactory is IMarketFactory {
    address public immutable implementation;
    /// The board where the trainers of this factory's secure-aggregation markets publish.
    address public immutable secureAggregation;
    address[] private _markets;
    mapping(address => address[]) private _marketsByOwner;
    mapping(address => bool) public isMarket;
    /// A contribution proof's instances hold the L x L RLOO subsets, which its adapter derives in
    /// memory: past 64 trainers that alone passes half a block (test/DataMarket.gas.t.sol).
    uint32 public constant MAX_SETTLEMENT_TRAINERS = 64;
    mapping(address => VerifierInfo) private _verifiers;

    constructor() {
        implementation = address(new DataMarket());
        secureAggregation = address(new SecureAggregation());
    }

    /// @notice Deploy a market and escrow `msg.value` in it; the caller becomes its owner.
    function createMarket(IDataMarket.Spec calldata spec) external payable returns (address market) {
        VerifierKind rounds = _verifiers[spec.roundVerifier].kind;
        _checkVerifier(spec.roundVerifier, rounds == VerifierKind.KzgRound ? rounds : VerifierKind.Round, spec.trainers);
        _checkVerifier(spec.settlementVerifier, VerifierKind.Settlement, spec.trainers);
        if (spec.settlementVerifier != address(0) && rounds == VerifierKind.KzgRound) {
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

    /// @notice The round verifier for `trainers` slots over `halo2`, EZKL's generated verifier of
    /// the round circuit.
    function deployRoundVerifier(IProofVerifier halo2, uint32 trainers) external returns (address adapter) {
        _checkRoundShape(trainers);
        adapter = address(new EzklRoundVerifier(halo2, trainers));
        _record(adapter, VerifierKind.Round, halo2, trainers, 0);
    }

    /// @notice The round verifier for `trainers` slots over `halo2`, EZKL's generated verifier of
    /// the round circuit with its inputs under KZG commitments (EzklKzgRoundVerifier).
    function deployKzgRoundVerifier(IProofVerifier halo2, uint32 trainers) external returns (address adapter) {
        _checkRoundShape(trainers);
        adapter = address(new EzklKzgRoundVerifier(halo2, trainers));
        _record(adapter, VerifierKind.KzgRound, halo2, trainers, 0);
    }

    /// @notice The settlement verifier for `trainers` slots and a test chunk of `samples` rows over
    /// `halo2`, EZKL's generated verifier of the settlement circuit.
    function deploySettlementVerifier(IProofVerifier halo2, uint32 trainers, uint32 samples)
        external
        returns (address adapter)
    {
        if (trainers == 0 || trainers > MAX_SETTLEMENT_TRAINERS || samples == 0) {
            revert InvalidVerifierShape(trainers, samples);
        }
        adapter = address(new EzklSettlementVerifier(halo2, trainers, samples));
        _record(adapter, VerifierKind.Settlement, halo2, trainers, samples);
    }

    function _checkRoundShape(uint32 trainers) private view {
        if (trainers == 0 || trainers > DataMarket(implementation).MAX_TRAINERS()) {
            revert InvalidVerifierShape(trainers, 0);
        }
    }

    function _record(address adapter, VerifierKind kind, IProofVerifier halo2, uint32 trainers, uint32 samples) private {
        bytes32 codeHash = address(halo2).codehash;
        if (address(halo2).code.length == 0) revert NoVerifierCode(address(halo2));
        _verifiers[adapter] = VerifierInfo(kind, trainers, samples, address(halo2), codeHash);
        emit VerifierDeployed(adapter, kind, address(halo2), codeHash, trainers, samples);
    }

    function _checkVerifier(address verifier, VerifierKind kind, uint32 trainers) private view {
        if (verifier == address(0)) return;
        VerifierInfo memory info = _verifiers[verifier];
        if (info.kind != kind) revert UnknownVerifier(verifier, kind);
        if (info.trainers != trainers) revert VerifierShapeMismatch(verifier, info.trainers, trainers);
    }

    /// @notice What the adapter `verifier` checks; kind None: not deployed by this factory.
    function verifierInfo(address verifier) external view returns (VerifierInfo memory) {
        return _verifiers[verifier];
    }

    function markets() external view returns (address[] memory) {
        return _markets;
    }

    function marketsOf(address owner) external view returns (address[] memory) {
        return _marketsByOwner[owner];
    }
}
