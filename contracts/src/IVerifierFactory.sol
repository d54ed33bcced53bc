// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title The fedmarket verifier factory's types, events and errors.
interface IVerifierFactory {
    /// Round: the round circuit with hashed inputs (Poseidon commitments); KzgRound: with inputs
    /// under KZG commitments (EZKL polycommit), for markets that do not prove their settlement;
    /// SplitRound: the round proven by parameter chunks, its inputs hashed per chunk.
    enum VerifierKind {
        None,
        Round,
        Settlement,
        KzgRound,
        SplitRound
    }

    /// What a verifier adapter the factory deployed checks: its kind and shape, and the EZKL
    /// verifier behind it with the hash of its code (so a trainer can rebuild the circuit and
    /// compare before registering; a split round's chunk verifier is the adapter's `chunkHalo2`).
    struct VerifierInfo {
        VerifierKind kind;
        uint32 trainers;
        uint32 samples; // settlement: rows of a test chunk, one proof's; zero otherwise
        uint32 chunks; // split round: parameter chunks; settlement: proofs (test chunks) per round
        address halo2;
        bytes32 halo2CodeHash;
    }

    event VerifierDeployed(
        address indexed adapter,
        VerifierKind kind,
        address halo2,
        bytes32 halo2CodeHash,
        uint32 trainers,
        uint32 samples,
        uint32 chunks
    );

    error NoVerifierCode(address halo2);
    error InvalidVerifierShape(uint32 trainers, uint32 samples);

    /// @notice What the adapter `verifier` checks; kind None: not deployed by this factory.
    function verifierInfo(address verifier) external view returns (VerifierInfo memory);
}
