// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IProofVerifier} from "./IProofVerifier.sol";

/// @notice One circuit's verifier as a market calls it: the market's instances (built from its own
/// state, contracts/README.md) are laid out as the circuit's EZKL instances and checked by the
/// Halo2 verifier EZKL generated for that circuit. Deployed once per circuit, next to it.
///
/// `proof` is `abi.encode(bytes halo2Proof, uint256[] free)`. `free` carries only instances the
/// statement leaves to the prover (hashes of private witness values the circuit checks itself,
/// such as the supplied square roots); every other instance comes from the market's.
abstract contract EzklCircuitVerifier is IProofVerifier {
    uint256 internal constant FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// @notice EZKL's generated `Halo2Verifier` for this circuit (same call signature).
    IProofVerifier public immutable halo2;

    constructor(IProofVerifier halo2_) {
        halo2 = halo2_;
    }

    function verifyProof(bytes calldata proof, uint256[] calldata instances) external virtual returns (bool) {
        (bytes memory halo2Proof, uint256[] memory free) = abi.decode(proof, (bytes, uint256[]));
        (bool ok, uint256[] memory circuitInstances) = circuitInstancesFor(instances, free, halo2Proof);
        return ok && _accepts(halo2, halo2Proof, circuitInstances);
    }

    /// @dev Whether the generated verifier `verifier` accepts the proof. It reverts on a proof it
    /// rejects: that is a `false` here, so the market reports every rejection the same way
    /// (`ProofRejected`).
    function _accepts(IProofVerifier verifier, bytes memory halo2Proof, uint256[] memory circuitInstances)
        internal
        returns (bool)
    {
        try verifier.verifyProof(halo2Proof, circuitInstances) returns (bool success) {
            return success;
        } catch {
            return false;
        }
    }

    /// @notice The instances the EZKL verifier is given for the market's `instances`, the
    /// prover's `free` values and its `halo2Proof`; `ok` is false when they do not fit this
    /// circuit, when an input commitment the proof carries is not the one on chain, or when an
    /// instance is not a field element's only encoding (the generated verifier reduces modulo the
    /// field).
    function circuitInstancesFor(uint256[] calldata instances, uint256[] memory free, bytes memory halo2Proof)
        public
        view
        returns (bool ok, uint256[] memory circuitInstances)
    {
        (ok, circuitInstances) = _layout(instances, free, halo2Proof);
        for (uint256 i = 0; ok && i < circuitInstances.length; ++i) {
            if (circuitInstances[i] >= FIELD) ok = false;
        }
    }

    /// @dev The circuit's instances from the market's; `ok` is false when the market's do not fit
    /// this circuit (another number of trainers, a value the circuit cannot express).
    function _layout(uint256[] calldata instances, uint256[] memory free, bytes memory halo2Proof)
        internal
        view
        virtual
        returns (bool ok, uint256[] memory circuitInstances);

    /// @dev The hash instance of a trainer slot: its on-chain commitment, or for a slot without one
    /// (no submission, which the circuits zero) the next free value. Returns the next free index,
    /// or `free.length + 1` when the free values ran out.
    function _slotHash(uint256 commitment, uint256[] memory free, uint256 used)
        internal
        pure
        returns (uint256 hash, uint256 next)
    {
        if (commitment != 0) return (commitment, used);
        if (used >= free.length) return (0, free.length + 1);
        return (free[used], used + 1);
    }

    /// @dev Limbs of a domain in a circuit's public tensor (fedmarket/fixed_point.py): EZKL
    /// reads inputs as float32, which holds 24-bit integers exactly.
    uint256 internal constant DOMAIN_LIMBS = 6;
    uint256 internal constant LIMB_BITS = 24;

    /// @dev The low 144 bits of a domain as the circuit's DOMAIN_LIMBS limbs, from `out[at]` on.
    function _domainLimbs(uint256 domain, uint256[] memory out, uint256 at) internal pure {
        for (uint256 k = 0; k < DOMAIN_LIMBS; ++k) {
            out[at + k] = (domain >> (LIMB_BITS * k)) & ((1 << LIMB_BITS) - 1);
        }
    }
}
