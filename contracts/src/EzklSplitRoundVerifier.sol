// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EzklCircuitVerifier} from "./EzklCircuitVerifier.sol";
import {IProofVerifier} from "./IProofVerifier.sol";

/// @notice A round of `trainers` slots proven in `chunks` parameter chunks, its inputs hashed
/// (fedmarket/zk/round_split.py): one proof of the chunk circuit per chunk (EZKL's verifier
/// `chunkHalo2`) and one of the rule circuit over the chunks' outputs (`halo2`), linked by their
/// instances. For rounds past one proof's memory; deployed by VerifierFactory (kind SplitRound).
///
/// A model's commitment on chain is keccak256(abi.encode(uint256[] [h_1..h_P])) mod FIELD over the
/// Poseidon hashes of its P chunks, each zero-padded to the chunk size (a global model's packed two
/// values per element, as the chunk circuit hashes it).
///
/// Market instances (DataMarket.roundInstances), L + 6 values:
///   [domain, round, cur_0..cur_{L-1}, start model, aggregate, benign mask, previous benign mask]
/// `proof` is abi.encode(bytes[] chunkProofs, bytes ruleProof, uint256[] hashes), where `hashes`
/// holds, for each chunk c, chunk proof c's instances (EZKL: a hash per input, then the hash of
/// its outputs), L + 4 values
///   [h(W_0,c)..h(W_{L-1},c), h(start_c), h(aggregate_c), h(mask), h(out_c)],
/// and last h(hints). The rule proof's instances are
///   [h(out_1)..h(out_P), h(hints), first, present_0..present_{L-1}, kept_0..kept_{L-1},
///    domain limbs (6), mask_0..mask_{L-1}, valid = 1]
/// (its outputs as EzklRoundVerifier's). Each present slot's chunk hashes must combine to its
/// commitment, and so must the start model's and the aggregate's; an absent slot's are free (the
/// rule masks the slot out everywhere), and so are h(mask) (the rule requires each chunk's echoed
/// mask to be its own) and h(hints) (the rule checks the advice, its outputs pin the public values).
contract EzklSplitRoundVerifier is EzklCircuitVerifier {
    /// Its loops check L x P chunk hashes and P + 1 proofs: within a block at L = 128, P = 16
    /// (test/SplitRoundVerifier.t.sol).
    uint256 public constant MAX_CHUNKS = 16;
    uint256 public constant MAX_TRAINERS = 128;

    /// @notice EZKL's generated verifier of the chunk circuit; `halo2` is the rule circuit's.
    IProofVerifier public immutable chunkHalo2;
    uint256 public immutable trainers;
    uint256 public immutable chunks;

    error InvalidSplitShape(uint256 trainers, uint256 chunks);

    constructor(IProofVerifier halo2_, IProofVerifier chunkHalo2_, uint256 trainers_, uint256 chunks_)
        EzklCircuitVerifier(halo2_)
    {
        if (trainers_ == 0 || trainers_ > MAX_TRAINERS || chunks_ < 2 || chunks_ > MAX_CHUNKS) {
            revert InvalidSplitShape(trainers_, chunks_);
        }
        chunkHalo2 = chunkHalo2_;
        trainers = trainers_;
        chunks = chunks_;
    }

    function verifyProof(bytes calldata proof, uint256[] calldata m) external override returns (bool) {
        (bytes[] memory chunkProofs, bytes memory ruleProof, uint256[] memory hashes) =
            abi.decode(proof, (bytes[], bytes, uint256[]));
        uint256 n = trainers;
        uint256 p = chunks;
        uint256 w = n + 4;
        if (m.length != n + 6 || chunkProofs.length != p || hashes.length != p * w + 1) return false;
        for (uint256 k = 0; k < hashes.length; ++k) {
            if (hashes[k] >= FIELD) return false; // one encoding per field element
        }
        // the slots' commitments, then the start model's and the aggregate's (m[2 .. n + 3])
        for (uint256 i = 0; i < n + 2; ++i) {
            uint256 commitment = m[2 + i];
            if (i < n && commitment == 0) continue; // an absent slot
            if (_combined(hashes, i, w, p) != commitment) return false;
        }
        for (uint256 c = 0; c < p; ++c) {
            uint256[] memory instances = new uint256[](w);
            for (uint256 k = 0; k < w; ++k) {
                instances[k] = hashes[c * w + k];
            }
            if (!_accepts(chunkHalo2, chunkProofs[c], instances)) return false;
        }
        (bool ok, uint256[] memory ruleInstances) = circuitInstancesFor(m, hashes, ruleProof);
        return ok && _accepts(halo2, ruleProof, ruleInstances);
    }

    /// @dev keccak256 of the `at`-th hash of every chunk, mod FIELD: a model's commitment.
    function _combined(uint256[] memory hashes, uint256 at, uint256 w, uint256 p) private pure returns (uint256) {
        uint256[] memory column = new uint256[](p);
        for (uint256 c = 0; c < p; ++c) {
            column[c] = hashes[c * w + at];
        }
        return uint256(keccak256(abi.encode(column))) % FIELD; // as the data chunks' commitment
    }

    /// @dev The rule proof's instances; `free` is the whole `hashes` array, checked by the caller.
    function _layout(uint256[] calldata m, uint256[] memory free, bytes memory)
        internal
        view
        override
        returns (bool ok, uint256[] memory c)
    {
        uint256 n = trainers;
        uint256 p = chunks;
        uint256 w = n + 4;
        if (m.length != n + 6 || free.length != p * w + 1) return (false, c);
        uint256 mask = m[n + 4];
        uint256 before = m[n + 5];
        if (mask >> n != 0 || before >> n != 0) return (false, c);
        c = new uint256[](p + 3 * n + 3 + DOMAIN_LIMBS);
        for (uint256 k = 0; k < p; ++k) {
            c[k] = free[k * w + n + 3];
        }
        c[p] = free[p * w];
        c[p + 1] = m[1] == 1 ? 1 : 0;
        for (uint256 i = 0; i < n; ++i) {
            c[p + 2 + i] = m[2 + i] != 0 ? 1 : 0;
            c[p + 2 + n + i] = (before >> i) & 1;
            c[p + 2 + 2 * n + DOMAIN_LIMBS + i] = (mask >> i) & 1;
        }
        _domainLimbs(m[0], c, p + 2 + 2 * n);
        c[p + 2 + 3 * n + DOMAIN_LIMBS] = 1;
        ok = true;
    }
}
