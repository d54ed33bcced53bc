// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// The subset of forge's cheatcodes these tests use (forge-std is not on the reachable npm
/// registry in a current version, and a test base this small is clearer than an old copy).
interface Vm {
    function warp(uint256 timestamp) external;
    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
    function deal(address account, uint256 balance) external;
    function expectRevert(bytes calldata revertData) external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert() external;
    function assume(bool condition) external;
    function label(address account, string calldata name) external;
    function addr(uint256 privateKey) external pure returns (address);
    function getBlockTimestamp() external view returns (uint256);
    function roll(uint256 blockNumber) external;
    function expectEmit(address emitter) external;
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);
}
