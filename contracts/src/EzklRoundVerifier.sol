// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EzklCircuitVerifier} from "./EzklCircuitVerifier.sol";
import {IProofVerifier} from "./IProofVerifier.sol";

/// @notice The round circuit of fedmarket/zk/round_circuit.py for `trainers` slots.
///
/// Market instances (DataMarket.roundInstances), L + 6 values:
///   [domain, round, cur_0..cur_{L-1}, start model, aggregate, benign mask, previous benign mask]
/// Circuit instances (EZKL: one Poseidon hash per hashed input, then the public outputs), 4L + 11:
///   [h(W_0)..h(W_{L-1}), h(start), h(aggregate), h(hints),
///    first, present_0..present_{L-1}, kept_0..kept_{L-1} (previous mask), domain limbs (6),
///    mask_0..mask_{L-1}, valid = 1]
/// where the hints are the prover's advice (square roots, Krum's order thresholds) and the
/// public values, one input.
/// h(start) is the contract's model commitment the round opened with: the circuit measures every
/// update from it. A slot with no commitment (no submission) is absent: present = 0 and its hash
/// is free (the circuit masks that slot out everywhere).
/// `free` = [h(W_i) for each absent slot i, in order, h(hints)]; the hints' hash is free because
/// the circuit checks the advice and the outputs pin the public values.
contract EzklRoundVerifier is EzklCircuitVerifier {
    uint256 public immutable trainers;

    constructor(IProofVerifier halo2_, uint256 trainers_) EzklCircuitVerifier(halo2_) {
        trainers = trainers_;
    }

    function _layout(uint256[] calldata m, uint256[] memory free, bytes memory)
        internal
        view
        override
        returns (bool ok, uint256[] memory c)
    {
        uint256 n = trainers;
        if (m.length != n + 6) return (false, c);
        uint256 mask = m[n + 4];
        uint256 before = m[n + 5];
        if (mask >> n != 0 || before >> n != 0) return (false, c);
        c = new uint256[](4 * n + 5 + DOMAIN_LIMBS);
        uint256 used = 0;
        for (uint256 i = 0; i < n; ++i) {
            (c[i], used) = _slotHash(m[2 + i], free, used);
            c[n + 4 + i] = m[2 + i] != 0 ? 1 : 0;
            c[2 * n + 4 + i] = (before >> i) & 1;
            c[3 * n + 4 + DOMAIN_LIMBS + i] = (mask >> i) & 1;
        }
        if (free.length != used + 1) return (false, c); // also false when the free values ran out
        c[n] = m[n + 2];
        c[n + 1] = m[n + 3];
        c[n + 2] = free[used];
        c[n + 3] = m[1] == 1 ? 1 : 0;
        _domainLimbs(m[0], c, 3 * n + 4);
        c[4 * n + 4 + DOMAIN_LIMBS] = 1;
        ok = true;
    }
}
