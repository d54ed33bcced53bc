// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IVerifierFactory} from "./IVerifierFactory.sol";

/// @title The fedmarket factory's types, events and errors.
interface IMarketFactory {
    event MarketCreated(address indexed market, address indexed owner, address indexed aggregator, uint256 deposit);

    error UnknownVerifier(address verifier, IVerifierFactory.VerifierKind expected);
    error VerifierShapeMismatch(address verifier, uint32 verifierTrainers, uint32 marketTrainers);
    /// The settlement circuit reads the Poseidon hash of each whole model: a market that proves
    /// its settlement proves its rounds with the hashed one-proof round circuit.
    error SettlementNeedsHashedRounds(address roundVerifier);

    /// No code at the verifier factory given.
    error NoVerifierFactory(address verifiers);

    /// @notice Whether this factory created `market`.
    function isMarket(address market) external view returns (bool);
}
