// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// Fuzzed markets: random sizes, submissions, masks, contributions and accuracy.
contract DataMarketFuzzTest is MarketFixture {
    function testFuzz_settlementConservesTheDepositAndPaysEquationFive(
        uint8 lSeed,
        uint8 tSeed,
        uint256 maskSeed,
        uint256 contributionSeed,
        uint16 accuracy
    ) public {
        uint32 l = uint32(bound(lSeed, 1, 12));
        uint32 t = uint32(bound(tSeed, 1, 4));
        accuracy = uint16(bound(accuracy, 0, 10_000));
        DataMarket market = start(l, t);
        uint256 full = (uint256(1) << l) - 1;
        uint256[] memory benign = new uint256[](l);
        for (uint32 r = 0; r < t; ++r) {
            uint256 submitted = uint256(keccak256(abi.encode(maskSeed, r, "s"))) & full;
            uint128 kept = uint128(uint256(keccak256(abi.encode(maskSeed, r, "b"))) & submitted);
            playRound(market, submitted, kept);
            for (uint256 i = 0; i < l; ++i) {
                if (kept >> i & 1 == 1) benign[i] += 1;
            }
        }
        int256[] memory c = new int256[](l);
        uint256 positive;
        for (uint256 i = 0; i < l; ++i) {
            c[i] = int256(uint256(keccak256(abi.encode(contributionSeed, i))) % 2e18) - 1e18;
            if (benign[i] == 0 && c[i] > 0) c[i] = -c[i]; // the contract rejects the other case
            if (c[i] > 0) positive += uint256(c[i]);
        }
        vm.prank(aggregator);
        market.settle(accuracy, c);

        uint256 pool = accuracy >= 9000 ? POOL_HIGH : accuracy >= 8000 ? POOL_LOW : 0;
        uint256 paid;
        for (uint256 i = 0; i < l; ++i) {
            uint256 expected = benign[i] * RP + (c[i] > 0 ? pool * uint256(c[i]) / positive : 0);
            assertEq(market.owed(trainerAt(i)), expected, "payout by eq. (5)");
            if (benign[i] == 0) assertEq(expected, 0, "never benign, never paid");
            paid += expected;
        }
        assertEq(paid + FEE + market.owed(owner), market.deposit(), "payouts + fee + refund == deposit");
        assertEq(market.undistributed(), 0, "nothing left undistributed");
        withdrawAll(market);
    }

    function testFuzz_anyRevealSubsetLeavesNoFundsLocked(uint8 lSeed, uint256 revealSeed) public {
        uint32 l = uint32(bound(lSeed, 1, 10));
        DataMarket market = create(l, 1);
        registerAll(market);
        uint256 revealed = revealSeed & ((uint256(1) << l) - 1);
        for (uint256 i = 0; i < l; ++i) {
            if (revealed >> i & 1 == 1) {
                vm.prank(trainerAt(i));
                market.reveal(seedOf(i));
            }
        }
        if (market.phase() == IDataMarket.Phase.SeedReveal) {
            vm.warp(block.timestamp + REVEAL_WINDOW + 1);
            market.closeReveal();
        }
        if (revealed == 0) {
            assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Cancelled), "nobody revealed");
        } else {
            assertEq(market.activeMask(), revealed, "active == revealed");
            playRound(market, revealed, uint128(revealed));
            vm.prank(aggregator);
            market.settle(9000, new int256[](l));
        }
        withdrawAll(market);
    }
}
