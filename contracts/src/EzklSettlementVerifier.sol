// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EzklCircuitVerifier} from "./EzklCircuitVerifier.sol";
import {IProofVerifier} from "./IProofVerifier.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @notice The settlement circuit of fedmarket/zk/settlement_circuit.py for `trainers` slots and
/// test chunks of `samples` rows (fedmarket/zk/settlement_proof.py), a round's test rows scored in
/// `parts` proofs of one chunk each: its accuracy and RLOO counts are sums over rows, so a round
/// past one proof's memory is proven in parts whose counts add up (1 to MAX_PARTS).
///
/// `parts` proofs per round (DataMarket.proveContributions); `proof` is
/// abi.encode(bytes[] halo2Proofs, uint256[] free). Market instances
/// (DataMarket.contributionInstances), 2L + 7 values:
///   [domain, dataCommitment, final model, round's RLOO seed, accuracy (bps), round's mask, round,
///    cur_0..cur_{L-1} (the round's), contribution_0..contribution_{L-1}]
/// Each part's circuit instances, L^2 + 2L + 11:
///   [h(W_0)..h(W_{L-1}), h(final model), h(test chunk), h(public),
///    correct, C_0..C_{L-1}, subsets (L x L, row by row), domain limbs (6), unpacked = 1]
/// h(final model) is the hash of the model packed two values per element (fedmarket/packing.py),
/// as the round circuit hashes its aggregate; `unpacked` says the packing was read uniquely.
/// `free` = [correct_0, splitSeed, h(public), K, chunk hash_0..chunk hash_{K-1}, h(W_i) for each
/// absent slot i in order, then for each part j >= 1: correct_j, C_{j,0}..C_{j,L-1}]. Part 0's
/// C_0 is the market's contributions less the other parts' (mod FIELD), so the parts' sum is the
/// market's by construction. Checked here: keccak(keccak(splitSeed, final model), round) is the
/// round's RLOO seed (so splitSeed is the market's), keccak(abi.encode(chunk hashes)) is its data
/// commitment, the K chunks form G = K / parts groups of `parts` consecutive chunks and round r
/// scores group `(splitSeed + r - 1) mod G`, part j its j-th chunk (one group per round, all
/// distinct while T < G), and accuracy == (sum of correct_j) * 10,000 / (samples * parts). The
/// RLOO subsets are derived here from the round's seed and mask, as settlement_proof.rloo_subsets.
contract EzklSettlementVerifier is EzklCircuitVerifier {
    /// Its loop verifies `parts` proofs, each passed L^2 + 2L + 11 instances in fresh memory, whose
    /// cost grows with the square of the total: both are bounded, and at their worst cases (16
    /// parts; 4 parts at the factory's 64 trainers) a round's proof stays within half a block
    /// (test/DataMarket.gas.t.sol).
    uint256 public constant MAX_PARTS = 16;
    uint256 public constant MAX_PART_INSTANCES = 4 * (64 * 64 + 2 * 64 + 11);

    uint256 public immutable trainers;
    uint256 public immutable samples;
    uint256 public immutable parts;

    error InvalidSettlementShape(uint256 samples, uint256 parts);

    constructor(IProofVerifier halo2_, uint256 trainers_, uint256 samples_, uint256 parts_)
        EzklCircuitVerifier(halo2_)
    {
        if (
            samples_ == 0 || parts_ == 0 || parts_ > MAX_PARTS
                || parts_ * (trainers_ * trainers_ + 2 * trainers_ + 11) > MAX_PART_INSTANCES
        ) revert InvalidSettlementShape(samples_, parts_);
        trainers = trainers_;
        samples = samples_;
        parts = parts_;
    }

    function verifyProof(bytes calldata proof, uint256[] calldata m) external override returns (bool) {
        (bytes[] memory proofs, uint256[] memory free) = abi.decode(proof, (bytes[], uint256[]));
        if (proofs.length != parts) return false;
        (bool ok, uint256[] memory c) = circuitInstancesFor(m, free, "");
        for (uint256 j = 0; ok && j < parts; ++j) {
            ok = (j == 0 || _toPart(c, free, m[6], j)) && _accepts(halo2, proofs[j], c);
        }
        return ok;
    }

    /// @notice Part `part`'s circuit instances, as `circuitInstancesFor` gives part 0's.
    function partInstancesFor(uint256[] calldata m, uint256[] memory free, uint256 part)
        external
        view
        returns (bool ok, uint256[] memory c)
    {
        (ok, c) = circuitInstancesFor(m, free, "");
        if (ok && part > 0) ok = part < parts && _toPart(c, free, m[6], part);
    }

    /// @dev Part 0's instances; every total over the parts is checked here.
    function _layout(uint256[] calldata m, uint256[] memory free, bytes memory)
        internal
        view
        override
        returns (bool ok, uint256[] memory c)
    {
        uint256 n = trainers;
        if (m.length != 2 * n + 7 || free.length < 4 + (parts - 1) * (n + 1)) return (false, c);
        if (m[5] >> n != 0 || m[6] == 0) return (false, c);
        (bool chunksOk, uint256 first, uint256 used) = _testChunks(m[1], free, m[6] - 1);
        if (!chunksOk || !_accuracyIs(m[4], free)) return (false, c);
        bytes32 marketSeed = keccak256(abi.encode(free[1], m[2]));
        if (uint256(keccak256(abi.encode(marketSeed, m[6]))) % FIELD != m[3]) return (false, c);

        c = new uint256[](n * n + 2 * n + 5 + DOMAIN_LIMBS);
        for (uint256 i = 0; i < n; ++i) {
            (c[i], used) = _slotHash(m[7 + i], free, used);
            c[n + 4 + i] = _partZeroContribution(m[7 + n + i], free, i);
        }
        if (used != _partAt(free, 1)) return (false, c); // also false when the free values ran out
        c[n] = m[2];
        c[n + 1] = free[first];
        c[n + 2] = free[2];
        c[n + 3] = free[0];
        _subsets(m[3], m[5], c, 2 * n + 4);
        _domainLimbs(m[0], c, n * n + 2 * n + 4);
        c[n * n + 2 * n + 4 + DOMAIN_LIMBS] = 1;
        ok = true;
    }

    /// @dev The free index of part `part`'s correct count, its contributions after it (part >= 1:
    /// the later parts' counts close `free`; part 0's count is free[0]).
    function _partAt(uint256[] memory free, uint256 part) private view returns (uint256) {
        return part == 0 ? 0 : free.length - (parts - part) * (trainers + 1);
    }

    /// @dev Whether the parts' correct counts, each at most `samples`, give accuracy `bps`.
    function _accuracyIs(uint256 bps, uint256[] memory free) private view returns (bool) {
        uint256 correct = 0;
        for (uint256 j = 0; j < parts; ++j) {
            uint256 part = free[_partAt(free, j)];
            if (part > samples) return false;
            correct += part;
        }
        return bps == (correct * 10_000) / (samples * parts);
    }

    /// @dev Part 0's contribution of slot `i`: the market's `total` less the other parts' (mod FIELD).
    function _partZeroContribution(uint256 total, uint256[] memory free, uint256 i) private view returns (uint256) {
        for (uint256 j = 1; j < parts; ++j) {
            total = addmod(total, FIELD - free[_partAt(free, j) + 1 + i] % FIELD, FIELD);
        }
        return total;
    }

    /// @dev Part `part`'s chunk, correct count and contributions over part 0's instances `c`;
    /// false when one is not a field element's only encoding.
    function _toPart(uint256[] memory c, uint256[] memory free, uint256 round, uint256 part)
        private
        view
        returns (bool ok)
    {
        uint256 n = trainers;
        uint256 at = _partAt(free, part);
        c[n + 1] = free[_firstChunk(free, round - 1) + part];
        c[n + 3] = free[at];
        ok = c[n + 1] < FIELD && c[n + 3] < FIELD;
        for (uint256 i = 0; i < n; ++i) {
            c[n + 4 + i] = free[at + 1 + i];
            if (c[n + 4 + i] >= FIELD) ok = false;
        }
    }

    /// @dev The test chunks: `free[4..4+K)` must hash to the data commitment, K a multiple of
    /// `parts` with at least two groups. Returns the free index of the round's first chunk hash
    /// and the index of the first free value after the chunk hashes.
    function _testChunks(uint256 dataCommitment, uint256[] memory free, uint256 offset)
        private
        view
        returns (bool ok, uint256 first, uint256 next)
    {
        uint256 k = free[3];
        if (k % parts != 0 || k / parts < 2 || free.length < 4 + k) return (false, 0, 0);
        uint256[] memory chunks = new uint256[](k);
        for (uint256 j = 0; j < k; ++j) {
            chunks[j] = free[4 + j];
        }
        if (uint256(keccak256(abi.encode(chunks))) % FIELD != dataCommitment) return (false, 0, 0);
        return (true, _firstChunk(free, offset), 4 + k);
    }

    /// @dev The free index of the first chunk hash of group `(splitSeed + offset) mod G`.
    function _firstChunk(uint256[] memory free, uint256 offset) private view returns (uint256) {
        uint256 g = free[3] / parts;
        return 4 + ((free[1] % g + offset % g) % g) * parts;
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
