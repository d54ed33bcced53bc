// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice The call every fedmarket verifier answers. It is the signature of the Solidity
/// verifier that EZKL generates (`Halo2Verifier.verifyProof`), so a generated verifier can be
/// referenced by a market as it is.
interface IProofVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool);
}
