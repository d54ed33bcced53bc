// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EzklKzgRoundVerifier} from "./EzklKzgRoundVerifier.sol";
import {EzklRoundVerifier} from "./EzklRoundVerifier.sol";
import {EzklSettlementVerifier} from "./EzklSettlementVerifier.sol";
import {EzklSplitRoundVerifier} from "./EzklSplitRoundVerifier.sol";
import {IProofVerifier} from "./IProofVerifier.sol";
import {IVerifierFactory} from "./IVerifierFactory.sol";

/// @title Deploys the verifier adapters fedmarket markets may name, and records what each checks.
/// @notice Only an adapter deployed here can verify a market's proofs (MarketFactory checks): our
/// code, which lays the market's instances out for the circuit and cannot be switched, over an
/// EZKL verifier whose code hash it records. A contract apart from MarketFactory because one
/// creator cannot hold every creation code: the market factory's initcode (DataMarket's and
/// SecureAggregation's creation code and its own runtime) and the adapters' together pass
/// EIP-3860's 49,152 bytes. It has no immutables, so a client compares its code with the
/// artifact's (fedmarket.chain.FactoryClient).
contract VerifierFactory is IVerifierFactory {
    /// One bit per trainer in a market's masks (DataMarket.MAX_TRAINERS).
    uint32 public constant MAX_TRAINERS = 128;
    /// A contribution proof's instances hold the L x L RLOO subsets, which its adapter derives in
    /// memory: past 64 trainers that alone passes half a block (test/DataMarket.gas.t.sol).
    uint32 public constant MAX_SETTLEMENT_TRAINERS = 64;

    mapping(address => VerifierInfo) private _verifiers;

    /// @notice The round verifier for `trainers` slots over `halo2`, EZKL's generated verifier of
    /// the round circuit.
    function deployRoundVerifier(IProofVerifier halo2, uint32 trainers) external returns (address adapter) {
        _checkRoundShape(trainers);
        adapter = address(new EzklRoundVerifier(halo2, trainers));
        _record(adapter, VerifierKind.Round, halo2, trainers, 0, 0);
    }

    /// @notice The round verifier for `trainers` slots over `halo2`, EZKL's generated verifier of
    /// the round circuit with its inputs under KZG commitments (EzklKzgRoundVerifier).
    function deployKzgRoundVerifier(IProofVerifier halo2, uint32 trainers) external returns (address adapter) {
        _checkRoundShape(trainers);
        adapter = address(new EzklKzgRoundVerifier(halo2, trainers));
        _record(adapter, VerifierKind.KzgRound, halo2, trainers, 0, 0);
    }

    /// @notice The round verifier for `trainers` slots proven in `chunks` parameter chunks: `halo2`
    /// is EZKL's verifier of the rule circuit, `chunkHalo2` of the chunk circuit
    /// (EzklSplitRoundVerifier, which refuses a shape past its bounds).
    function deploySplitRoundVerifier(IProofVerifier halo2, IProofVerifier chunkHalo2, uint32 trainers, uint32 chunks)
        external
        returns (address adapter)
    {
        _checkRoundShape(trainers);
        if (address(chunkHalo2).code.length == 0) revert NoVerifierCode(address(chunkHalo2));
        adapter = address(new EzklSplitRoundVerifier(halo2, chunkHalo2, trainers, chunks));
        _record(adapter, VerifierKind.SplitRound, halo2, trainers, 0, chunks);
    }

    /// @notice The settlement verifier for `trainers` slots over `halo2`, EZKL's generated verifier
    /// of the settlement circuit for test chunks of `samples` rows, each round's test rows proven
    /// in `parts` such proofs (EzklSettlementVerifier, which refuses a shape past its bounds).
    function deploySettlementVerifier(IProofVerifier halo2, uint32 trainers, uint32 samples, uint32 parts)
        external
        returns (address adapter)
    {
        if (trainers == 0 || trainers > MAX_SETTLEMENT_TRAINERS || samples == 0) {
            revert InvalidVerifierShape(trainers, samples);
        }
        adapter = address(new EzklSettlementVerifier(halo2, trainers, samples, parts));
        _record(adapter, VerifierKind.Settlement, halo2, trainers, samples, parts);
    }

    /// @inheritdoc IVerifierFactory
    function verifierInfo(address verifier) external view returns (VerifierInfo memory) {
        return _verifiers[verifier];
    }

    function _checkRoundShape(uint32 trainers) private pure {
        if (trainers == 0 || trainers > MAX_TRAINERS) revert InvalidVerifierShape(trainers, 0);
    }

    function _record(
        address adapter,
        VerifierKind kind,
        IProofVerifier halo2,
        uint32 trainers,
        uint32 samples,
        uint32 chunks
    ) private {
        bytes32 codeHash = address(halo2).codehash;
        if (address(halo2).code.length == 0) revert NoVerifierCode(address(halo2));
        _verifiers[adapter] = VerifierInfo(kind, trainers, samples, chunks, address(halo2), codeHash);
        emit VerifierDeployed(adapter, kind, address(halo2), codeHash, trainers, samples, chunks);
    }
}
