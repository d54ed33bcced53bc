// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// The loops over rounds x trainers at their bounds: settling, or forcing out a stalled
/// aggregator, from a market of MAX_TRAINERS trainers that ran MAX_ROUNDS rounds with everyone
/// kept every round, stays under 15M gas (half of a mainnet block), so no market can grow past
/// the point where its escrow could no longer be paid out.
contract DataMarketGasTest is MarketFixture {
    uint256 internal constant LIMIT = 15_000_000;

    function _longest() private returns (DataMarket market) {
        uint32 l = uint32(DataMarket(factory.implementation()).MAX_TRAINERS());
        uint32 t = uint32(DataMarket(factory.implementation()).MAX_ROUNDS());
        vm.deal(owner, required(l, t) + 1 ether);
        market = start(l, t);
        uint256 everyone = (uint256(1) << l) - 1;
        for (uint32 r = 1; r <= t; ++r) {
            if (r < t) {
                playRound(market, everyone, uint128(everyone));
            } else {
                uint32 round = openRound(market);
                submitMask(market, round, everyone);
                finalize(market, round, uint128(everyone));
            }
        }
        assertEq(uint256(market.phase()), uint256(IDataMarket.Phase.Settlement), "every round finalized");
    }

    function test_settleAtTheBoundsFitsABlock() public {
        DataMarket market = _longest();
        int256[] memory c = new int256[](market.trainerCount());
        for (uint256 i = 0; i < c.length; ++i) {
            c[i] = int256(i + 1);
        }
        uint256 snapshot = vm.snapshotState();
        vm.prank(aggregator);
        uint256 before = gasleft();
        market.settle(9500, c, "");
        uint256 used = before - gasleft();
        emit log_named_uint("settle gas at L = 128, T = MAX_ROUNDS", used);
        assertLt(used, LIMIT, "settle");

        vm.revertToState(snapshot);
        vm.warp(market.aggregatorDeadline() + 1);
        before = gasleft();
        market.forceSettle();
        used = before - gasleft();
        emit log_named_uint("forceSettle gas at L = 128, T = MAX_ROUNDS", used);
        assertLt(used, LIMIT, "forceSettle");
        withdrawAll(market);
    }
}
