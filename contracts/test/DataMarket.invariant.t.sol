// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../src/DataMarket.sol";
import {IDataMarket} from "../src/IDataMarket.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";
import {Vm} from "./utils/Vm.sol";

/// Drives one market through random runs of the protocol. `advance` takes the next honest step
/// with random choices (who registers, reveals and submits, which submissions are excluded and
/// which kept, the contributions, and stalls of every party); `chaos` makes any call from any party with any
/// arguments; `warp` moves time; `withdraw` pulls a payout. The ghost state records only what
/// landed, so the invariants compare the contract's books with what really happened.
contract MarketHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    DataMarket public immutable market;
    address public immutable owner;
    address public immutable aggregator;
    uint256 public immutable l;
    address[] public actors; // trainers 0..l-1, then owner, aggregator, a stranger

    uint256[] public benignRounds; // ghost, by registration index: finalized rounds kept in
    int256[] public settledContributions;
    bool public settled;
    bool public excludedEver;
    mapping(address => uint256) public withdrawn;
    mapping(bytes4 => uint256) public landed; // selector => calls that succeeded

    constructor(DataMarket market_, address owner_, address aggregator_, uint256 l_) {
        market = market_;
        owner = owner_;
        aggregator = aggregator_;
        l = l_;
        for (uint256 i = 0; i < l_; ++i) {
            actors.push(address(uint160(0x7000 + i)));
        }
        actors.push(owner_);
        actors.push(aggregator_);
        actors.push(address(0x5757));
        benignRounds = new uint256[](l_);
        settledContributions = new int256[](l_);
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    // ------------------------------------------------------------ fuzzed entry points

    function advance(uint256 seed) external {
        IDataMarket.Phase phase = market.phase();
        if (phase == IDataMarket.Phase.Registration) {
            if (seed % 10 == 0) return _stallThen(market.registrationDeadline(), DataMarket.cancel.selector, seed);
            for (uint256 i = 0; i < l; ++i) {
                _register(actors[i]);
            }
        } else if (phase == IDataMarket.Phase.SeedReveal) {
            for (uint256 i = 0; i < l; ++i) {
                if (uint256(keccak256(abi.encode(seed, i))) % 5 != 0) _reveal(actors[i]);
            }
            if (market.phase() == IDataMarket.Phase.SeedReveal) {
                _stallThen(market.revealDeadline(), DataMarket.closeReveal.selector, seed);
            }
        } else if (phase == IDataMarket.Phase.Training) {
            if (seed % 12 == 0) return _stallThen(market.aggregatorDeadline(), DataMarket.forceSettle.selector, seed);
            uint32 round = market.currentRound();
            if (round == 0 || market.getRound(round).finalized) {
                vm.roll(block.number + 1); // the split seed's block hash is readable from the next block
                _call(aggregator, abi.encodeCall(DataMarket.openRound, (bytes32(uint256(3)), bytes32(uint256(4)))));
                round = market.currentRound();
            }
            for (uint256 i = 0; i < l; ++i) {
                if (uint256(keccak256(abi.encode(seed, "submit", i))) % 4 != 0) _submit(actors[i], round, seed + i);
            }
            if (market.submittedMask(round) != market.activeMask()) vm.warp(market.getRound(round).deadline + 1);
            if (seed % 3 == 0) {
                uint256 bits = uint256(keccak256(abi.encode(seed, "exclude"))) & market.submittedMask(round);
                _exclude(aggregator, round, bits & ~uint256(market.excludedMask(round)));
            }
            uint128 mask = uint128(uint256(keccak256(abi.encode(seed, "mask")))) & market.submittedMask(round);
            _finalize(round, mask & ~market.excludedMask(round));
        } else if (phase == IDataMarket.Phase.Settlement) {
            if (seed % 8 == 0) return _stallThen(market.aggregatorDeadline(), DataMarket.forceSettle.selector, seed);
            int256[] memory c = new int256[](l);
            for (uint256 i = 0; i < l; ++i) {
                c[i] = int256(uint256(keccak256(abi.encode(seed, i))) % 1e6) - 3e5;
                if (benignRounds[i] == 0 && c[i] > 0 && seed % 3 != 0) c[i] = -c[i]; // sometimes an invalid claim
            }
            _settle(aggregator, uint16(seed % 10_001), c);
        } else {
            withdraw(seed);
        }
    }

    function chaos(uint8 action, uint256 who, uint256 arg) external {
        address from = actors[who % actors.length];
        uint32 round = market.currentRound() + uint32(arg % 3) - 1;
        action %= 11;
        if (action == 0) _register(from);
        else if (action == 1) _reveal(from);
        else if (action == 2) _call(from, abi.encodeCall(DataMarket.closeReveal, ()));
        else if (action == 3) _call(from, abi.encodeCall(DataMarket.cancel, ()));
        else if (action == 4) _call(from, abi.encodeCall(DataMarket.openRound, (bytes32(arg), bytes32(arg >> 8))));
        else if (action == 5) _submit(from, round, arg);
        else if (action == 6) _finalizeFrom(from, round, uint128(arg));
        else if (action == 7) _settle(from, uint16(arg), new int256[](l));
        else if (action == 8) _call(from, abi.encodeCall(DataMarket.forceSettle, ()));
        else if (action == 9) _exclude(from, round, arg);
        else withdraw(who);
    }

    /// Mostly minutes, sometimes past every deadline (registration is open for a day).
    function warp(uint256 seconds_) external {
        uint256 most = seconds_ % 8 == 0 ? 2 days : 40 minutes;
        vm.warp(vm.getBlockTimestamp() + 1 + (seconds_ / 8) % most);
    }

    function withdraw(uint256 who) public {
        address a = actors[who % actors.length];
        uint256 amount = market.owed(a);
        if (_call(a, abi.encodeCall(DataMarket.withdraw, ()))) withdrawn[a] += amount;
    }

    // ------------------------------------------------------------ calls

    function _call(address from, bytes memory data) private returns (bool ok) {
        vm.prank(from);
        (ok,) = address(market).call(data);
        if (ok) landed[bytes4(data)] += 1;
    }

    function _stallThen(uint64 deadline, bytes4 selector, uint256 seed) private {
        vm.warp(uint256(deadline) + 1);
        _call(actors[seed % actors.length], abi.encodeWithSelector(selector));
    }

    function _register(address t) private {
        bytes32 c = market.seedCommitmentFor(t, keccak256(abi.encode(t)));
        uint256 bond = market.trainerBond();
        vm.deal(t, t.balance + bond);
        vm.prank(t);
        (bool ok,) = address(market).call{value: bond}(
            abi.encodeCall(DataMarket.register, (bytes32(uint256(1)), c, bytes32(uint256(2))))
        );
        if (ok) landed[DataMarket.register.selector] += 1;
    }

    function _reveal(address t) private {
        _call(t, abi.encodeCall(DataMarket.reveal, (keccak256(abi.encode(t)))));
    }

    function _submit(address t, uint32 round, uint256 commitment) private {
        bytes32 c = bytes32(1 + commitment % (market.FIELD() - 1));
        _call(t, abi.encodeCall(DataMarket.submit, (round, bytes32(uint256(5)), c)));
    }

    /// Exclude the submissions `bits` picks (any of them, submitted or not), unkeyed.
    function _exclude(address from, uint32 round, uint256 bits) private {
        uint256 count;
        for (uint256 i = 0; i < l; ++i) {
            if (bits >> i & 1 == 1) ++count;
        }
        IDataMarket.Exclusion[] memory list = new IDataMarket.Exclusion[](count);
        for ((uint256 i, uint256 k) = (0, 0); i < l; ++i) {
            if (bits >> i & 1 == 1) list[k++] = IDataMarket.Exclusion(uint32(i), IDataMarket.ExclusionReason.Unavailable, 0);
        }
        if (_call(from, abi.encodeCall(DataMarket.exclude, (round, list)))) excludedEver = true;
    }

    function _finalize(uint32 round, uint128 mask) private {
        _finalizeFrom(aggregator, round, mask);
    }

    function _finalizeFrom(address from, uint32 round, uint128 mask) private {
        bytes memory data = abi.encodeCall(DataMarket.finalizeRound, (round, bytes32(uint256(6)), bytes32(uint256(7)), mask, ""));
        if (_call(from, data)) {
            for (uint256 i = 0; i < l; ++i) {
                if (mask >> i & 1 == 1) benignRounds[i] += 1;
            }
        }
    }

    function _settle(address from, uint16 accuracy, int256[] memory c) private {
        if (_call(from, abi.encodeCall(DataMarket.settle, (accuracy, c)))) {
            settled = true;
            settledContributions = c;
        }
    }
}

contract DataMarketInvariantTest is MarketFixture {
    MarketHandler internal handler;
    DataMarket internal market;
    uint32 internal constant L = 4;
    uint32 internal constant T = 3;

    uint256 internal constant BOND = 0.05 ether;

    function setUp() public override {
        super.setUp();
        market = bonded();
        handler = new MarketHandler(market, owner, aggregator, L);
    }

    function bonded() internal returns (DataMarket) {
        IDataMarket.Spec memory s = spec(L, T, address(0), address(0));
        s.trainerBond = BOND;
        return createWith(s, required(L, T));
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// The invariants are only as good as the states the runs reach: `advance` alone, from a
    /// few seeds, must end markets settled (with a trainer flagged), aborted and cancelled.
    function test_handlerReachesEveryEndState() public {
        bool settledWithFlag;
        bool aborted;
        bool cancelled;
        bool settledWithExclusion;
        for (uint256 seed = 1; seed <= 40; ++seed) {
            DataMarket m = bonded();
            MarketHandler h = new MarketHandler(m, owner, aggregator, L);
            for (uint256 step = 0; step < 12; ++step) {
                h.advance(uint256(keccak256(abi.encode(seed, step))));
            }
            IDataMarket.Phase p = m.phase();
            if (p == IDataMarket.Phase.Settled && h.benignRounds(0) < T) settledWithFlag = true;
            if (p == IDataMarket.Phase.Settled && h.excludedEver()) settledWithExclusion = true;
            if (p == IDataMarket.Phase.Aborted && m.currentRound() > 0) aborted = true;
            if (p == IDataMarket.Phase.Cancelled) cancelled = true;
        }
        assertTrue(settledWithFlag && aborted && cancelled, "some end state is never reached");
        assertTrue(settledWithExclusion, "no run settles a market with an exclusion");
    }

    function invariant_withdrawalsNeverExceedCredits() public view {
        assertLe(market.totalWithdrawn(), market.totalCredited(), "withdrawn <= credited");
    }

    function _isFinal() private view returns (bool) {
        IDataMarket.Phase p = market.phase();
        return p == IDataMarket.Phase.Settled || p == IDataMarket.Phase.Cancelled || p == IDataMarket.Phase.Aborted;
    }

    function invariant_balanceIsOwedPlusUndistributed() public view {
        assertEq(
            address(market).balance, market.totalOwed() + market.undistributed() + market.bondsHeld(), "balance"
        );
    }

    /// A trainer's bond is its own once it revealed, or every trainer's when the market was
    /// cancelled in registration; nobody else's.
    function _bondOf(address t) private view returns (uint256) {
        bool cancelledInRegistration = market.phase() == IDataMarket.Phase.Cancelled && market.trainers().length < L;
        return market.isActive(t) || cancelledInRegistration ? BOND : 0;
    }

    function invariant_owedSumsToTotalOwed() public view {
        uint256 sum;
        for (uint256 i = 0; i < handler.actorCount(); ++i) {
            sum += market.owed(handler.actors(i));
        }
        assertEq(sum, market.totalOwed(), "sum of owed");
    }

    function invariant_endStatesLeaveEverythingClaimable() public view {
        if (!_isFinal()) {
            assertEq(market.deposit() - market.undistributed(), 0, "no escrow credited before the end");
            return;
        }
        assertEq(market.undistributed(), 0, "undistributed at the end");
        assertEq(market.bondsHeld(), 0, "no bond held at the end");
        uint256 claimed;
        for (uint256 i = 0; i < handler.actorCount(); ++i) {
            address a = handler.actors(i);
            claimed += market.owed(a) + handler.withdrawn(a);
        }
        uint256 bonds = BOND * market.trainers().length;
        assertEq(claimed, market.deposit() + bonds, "paid out + refund == deposit + bonds");
    }

    function invariant_noPayoutForFlaggedRounds() public view {
        if (!_isFinal()) return;
        address[] memory registered = market.trainers(); // by registration index, as in the masks
        for (uint256 i = 0; i < registered.length; ++i) {
            address t = registered[i];
            uint256 credited = market.owed(t) + handler.withdrawn(t) - _bondOf(t);
            uint256 participation = handler.benignRounds(i) * RP;
            bool shares = handler.settled() && handler.settledContributions(i) > 0;
            if (shares) assertTrue(credited >= participation, "participation paid");
            else assertEq(credited, participation, "R_p per benign round, nothing for flagged ones");
            if (handler.benignRounds(i) == 0) assertEq(credited, 0, "never benign, never paid");
        }
    }

    function invariant_anExcludedSubmissionIsNeverKept() public view {
        for (uint32 r = 1; r <= market.currentRound(); ++r) {
            assertEq(market.getRound(r).benignMask & market.excludedMask(r), 0, "excluded and kept");
            assertEq(market.excludedMask(r) & ~market.submittedMask(r), 0, "excluded without a submission");
        }
    }

    function invariant_onlyTheAggregatorIsPaidAFee() public view {
        if (market.phase() != IDataMarket.Phase.Settled) {
            assertEq(market.owed(aggregator) + handler.withdrawn(aggregator), 0, "fee only at settlement");
        }
    }
}
