// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {DataMarket} from "./DataMarket.sol";

/// @title Creates fedmarket markets as clones of one implementation.
/// @notice A project owner cannot deploy its own code and call it a market: every market is a
/// minimal proxy of `implementation`, deployed here (sources/004, Remark 3).
contract MarketFactory {
    address public immutable implementation;
    address[] private _markets;
    mapping(address => address[]) private _marketsByOwner;
    mapping(address => bool) public isMarket;

    event MarketCreated(address indexed market, address indexed owner, address indexed aggregator, uint256 deposit);

    constructor() {
        implementation = address(new DataMarket());
    }

    /// @notice Deploy a market and escrow `msg.value` in it; the caller becomes its owner.
    function createMarket(DataMarket.Spec calldata spec) external payable returns (address market) {
        market = Clones.clone(implementation);
        // Record first, then initialize (our own code): a failed initialization reverts it all.
        _markets.push(market);
        isMarket[market] = true;
        _marketsByOwner[msg.sender].push(market);
        emit MarketCreated(market, msg.sender, spec.aggregator, msg.value);
        DataMarket(market).initialize{value: msg.value}(msg.sender, spec);
    }

    function markets() external view returns (address[] memory) {
        return _markets;
    }

    function marketsOf(address owner) external view returns (address[] memory) {
        return _marketsByOwner[owner];
    }
}
