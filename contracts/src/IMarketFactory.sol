// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title The fedmarket factory's types, events and errors.
interface IMarketFactory {
    enum VerifierKind {
        None,
        Round,
        Settlement
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

    /// @notice Whether this factory created `market`.
    function isMarket(address market) external view returns (bool);
}
