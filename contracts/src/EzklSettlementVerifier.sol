// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EzklCircuitVerifier} from "./EzklCircuitVerifier.sol";
import {IProofVerifier} from "./IProofVerifier.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @notice The settlement circuit of fedmarket/zk/settlement_circuit.py for `trainers` slots and a
/// test chunk of `samples` rows (fedmarket/zk/settlement_proof.py).
///
/// One proof per round (DataMarket.proveContributions). Market instances
/// (DataMarket.contributionInstances), 2L + 7 values:
///   [domain, dataCommitment, final model, round's RLOO seed, accuracy (bps), round's mask, round,
///    cur_0..cur_{L-1} (the round's), contribution_0..contribution_{L-1}]
/// Circuit instances, L^2 + 2L + 11:
///   [h(W_0)..h(W_{L-1}), h(final model), h(test chunk), h(public),
///    correct, C_0..C_{L-1}, subsets (L x L, row by row), domain limbs (6), unpacked = 1]
/// h(final model) is the hash of the model packed two values per element (fedmarket/packing.py),
/// as the round circuit hashes its aggregate; `unpacked` says the packing was read uniquely.
/// `free` = [correct, splitSeed, h(public), K, chunk hash_0..chunk hash_{K-1}, h(W_i) for each
/// absent slot i in order]. Checked here: keccak(keccak(splitSeed, final model), round) is the
/// round's RLOO seed (so splitSeed is the market's), keccak(abi.encode(chunk hashes)) is its data
/// commitment, the test chunk is chunk `(splitSeed + round - 1) mod K` (one chunk per round, all
/// distinct while T < K), and accuracy == correct * 10,000 / samples. The RLOO subsets are
/// derived here from the round's seed and mask, as settlement_proof.rloo_subsets.
contract EzklSettlementVerifier is EzklCircuitVerifier {
    uint256 public immutable trainers;
    uint256 public immutable samples;

    constructor(IProofVerifier halo2_, uint256 trainers_, uint256 samples_) EzklCircuitVerifier(halo2_) {
        trainers = trainers_;
        samples = samples_;
    }

    function _layout(uint256[] calldata m, uint256[] memory free, bytes memory)
        internal
        view
        override
        returns (bool ok, uint256[] memory c)
    {
        uint256 n = trainers;
        if (m.length != 2 * n + 7 || free.length < 4) return (false, c);
        if (m[5] >> n != 0 || m[6] == 0) return (false, c);
        uint256 correct = free[0];
        if (correct > samples || m[4] != (correct * 10_000) / samples) return (false, c);
        bytes32 marketSeed = keccak256(abi.encode(free[1], m[2]));
        if (uint256(keccak256(abi.encode(marketSeed, m[6]))) % FIELD != m[3]) return (false, c);
        (bool chunksOk, uint256 testHash, uint256 used) = _testChunk(m[1], free, m[6] - 1);
        if (!chunksOk) return (false, c);

        c = new uint256[](n * n + 2 * n + 5 + DOMAIN_LIMBS);
        for (uint256 i = 0; i < n; ++i) {
            (c[i], used) = _slotHash(m[7 + i], free, used);
            c[n + 4 + i] = m[7 + n + i];
        }
        if (used != free.length) return (false, c); // also false when the free values ran out
        c[n] = m[2];
        c[n + 1] = testHash;
        c[n + 2] = free[2];
        c[n + 3] = correct;
        _subsets(m[3], m[5], c, 2 * n + 4);
        _domainLimbs(m[0], c, n * n + 2 * n + 4);
        c[n * n + 2 * n + 4 + DOMAIN_LIMBS] = 1;
        ok = true;
    }

    /// @dev The test chunk's hash: `free[4..4+K)` must hash to the data commitment; the chunk is
    /// `(splitSeed + offset) mod K`. Returns the index of the first free value after the chunk hashes.
    function _testChunk(uint256 dataCommitment, uint256[] memory free, uint256 offset)
        private
        pure
        returns (bool ok, uint256 testHash, uint256 next)
    {
        uint256 k = free[3];
        if (k < 2 || free.length < 4 + k) return (false, 0, 0);
        uint256[] memory chunks = new uint256[](k);
        for (uint256 j = 0; j < k; ++j) {
            chunks[j] = free[4 + j];
        }
        if (uint256(keccak256(abi.encode(chunks))) % FIELD != dataCommitment) return (false, 0, 0);
        return (true, chunks[(free[1] % k + offset % k) % k], 4 + k);
    }

    /// @dev RLOO subsets (sources/004 eq. (2)): benign trainer i with `size - 1` other benign
    /// trainers drawn without replacement by keccak256(seed, i, r), size = min(N, max(2, ceil(log2 N))).
    function _subsets(uint256 seed, uint256 mask, uint256[] memory out, uint256 at) private view {
        uint256 n = trainers;
        uint256[] memory benign = new uint256[](n);
        uint256 count = 0;
        for (uint256 j = 0; j < n; ++j) {
            if ((mask >> j) & 1 == 1) benign[count++] = j;
        }
        uint256 size = count > 1 ? Math.min(count, Math.max(2, Math.log2(count, Math.Rounding.Ceil))) : 1;
        uint256[] memory others = new uint256[](n);
        for (uint256 b = 0; b < count; ++b) {
            uint256 i = benign[b];
            out[at + i * n + i] = 1;
            uint256 left = 0;
            for (uint256 j = 0; j < count; ++j) {
                if (benign[j] != i) others[left++] = benign[j];
            }
            for (uint256 r = 0; r + 1 < size; ++r) {
                uint256 pick = uint256(keccak256(abi.encode(seed, i, r))) % left;
                out[at + i * n + others[pick]] = 1;
                others[pick] = others[--left];
            }
        }
    }
}
