// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title The fedmarket factory's types, events and errors.
interface IMarketFactory {
    /// Round: the round circuit with hashed inputs (Poseidon commitments); KzgRound: with inputs
    /// under KZG commitments (EZKL polycommit), for markets that do not prove their settlement.
    enum VerifierKind {
        None,
        Round,
        Settlement,
        KzgRound
    }

    /// What a verifier adapter the factory deployed checks: its kind and shape, and the EZKL
    /// verifier behind it with the hash of its code (so a trainer can rebuild the circuit and
    /// compare before registering).
    struct VerifierInfo {
        VerifierKind kind;
        uint32 trainers;
        uint32 samples; // settlement: rows of the test chunk; zero for a round verifier
        address halo2;
        bytes32 halo2CodeHash;
    }

    event MarketCreated(address indexed market, address indexed owner, address indexed aggregator, uint256 deposit);
    event VerifierDeployed(
        address indexed adapter, VerifierKind kind, address halo2, bytes32 halo2CodeHash, uint32 trainers, uint32 samples
    );

    error NoVerifierCode(address halo2);
    error InvalidVerifierShape(uint32 trainers, uint32 samples);
    error UnknownVerifier(address verifier, VerifierKind expected);
    error VerifierShapeMismatch(address verifier, uint32 verifierTrainers, uint32 marketTrainers);
    /// The settlement circuit reads Poseidon commitments: a market that proves its settlement
    /// proves its rounds with the hashed round circuit.
    error SettlementNeedsHashedRounds(address roundVerifier);

    /// @notice Whether this factory created `market`.
    function isMarket(address market) external view returns (bool);
}
