// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EzklCircuitVerifier} from "./EzklCircuitVerifier.sol";
import {IProofVerifier} from "./IProofVerifier.sol";

/// @notice The round circuit of fedmarket/algorithms/outliers/proven.py for `trainers` slots, its
/// inputs under KZG commitments that the proof carries (EZKL `polycommit`) instead of hashed:
/// the proof opens with one point (x, y) per input, W_0..W_{L-1}, start model, aggregate, hints
/// (the prover's advice and the public values, one input), and a model's commitment on chain is
/// keccak256(abi.encode(x, y)) mod FIELD (fedmarket/zk/ezkl/polycommit.py). A market that also proves its settlement uses the hashed
/// round circuit (EzklRoundVerifier): the settlement circuit reads Poseidon commitments.
///
/// Market instances (DataMarket.roundInstances), L + 6 values:
///   [domain, round, cur_0..cur_{L-1}, start model, aggregate, benign mask, previous benign mask]
/// Circuit instances (its outputs), 3L + 8:
///   [first, present_0..present_{L-1}, kept_0..kept_{L-1} (previous mask), domain limbs (6),
///    mask_0..mask_{L-1}, valid = 1]
/// Each present slot's point, the start model's and the aggregate's must be the commitment on
/// chain. A slot with no commitment (no submission, or excluded) is absent: present = 0, and the
/// circuit masks it out everywhere, so its point is left unchecked; so is the hints' point (the
/// circuit checks the advice, the outputs pin the public values). `free` is empty.
contract EzklKzgRoundVerifier is EzklCircuitVerifier {
    uint256 public immutable trainers;

    constructor(IProofVerifier halo2_, uint256 trainers_) EzklCircuitVerifier(halo2_) {
        trainers = trainers_;
    }

    function _layout(uint256[] calldata m, uint256[] memory free, bytes memory proof)
        internal
        view
        override
        returns (bool ok, uint256[] memory c)
    {
        uint256 n = trainers;
        if (m.length != n + 6 || free.length != 0 || proof.length < (n + 3) * POINT_BYTES) return (false, c);
        uint256 mask = m[n + 4];
        uint256 before = m[n + 5];
        if (mask >> n != 0 || before >> n != 0) return (false, c);
        if (_pointCommitment(proof, n) != m[n + 2] || _pointCommitment(proof, n + 1) != m[n + 3]) return (false, c);
        c = new uint256[](3 * n + 2 + DOMAIN_LIMBS);
        for (uint256 i = 0; i < n; ++i) {
            if (m[2 + i] != 0) {
                if (_pointCommitment(proof, i) != m[2 + i]) return (false, c);
                c[1 + i] = 1;
            }
            c[n + 1 + i] = (before >> i) & 1;
            c[2 * n + 1 + DOMAIN_LIMBS + i] = (mask >> i) & 1;
        }
        c[0] = m[1] == 1 ? 1 : 0;
        _domainLimbs(m[0], c, 2 * n + 1);
        c[3 * n + 1 + DOMAIN_LIMBS] = 1;
        ok = true;
    }

    /// @dev Bytes of one input commitment in the proof's transcript (x and y, big-endian).
    uint256 private constant POINT_BYTES = 64;

    /// @dev The market commitment of the proof's `k`-th input point; the caller checked its length.
    function _pointCommitment(bytes memory proof, uint256 k) private pure returns (uint256 commitment) {
        bytes32 digest;
        assembly ("memory-safe") {
            digest := keccak256(add(add(proof, 32), mul(k, 64)), 64)
        }
        commitment = uint256(digest) % FIELD;
    }
}
