// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DataMarket} from "../../src/DataMarket.sol";
import {IDataMarket} from "../../src/IDataMarket.sol";
import {MarketFactory} from "../../src/MarketFactory.sol";
import {VerifierFactory} from "../../src/VerifierFactory.sol";
import {IProofVerifier} from "../../src/IProofVerifier.sol";
import {EzklCircuitVerifier} from "../../src/EzklCircuitVerifier.sol";
import {TestBase} from "./TestBase.sol";

/// Accepts exactly one instance vector (set by the test), so a proof is "valid" only for the
/// statement it was made for: what a real verifier does, minus the cryptography.
contract PinnedVerifier is IProofVerifier {
    bytes32 public expected;
    uint256 public calls;

    function pin(uint256[] calldata instances) external {
        expected = keccak256(abi.encode(instances));
    }

    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool) {
        calls += 1;
        return proof.length > 0 && keccak256(abi.encode(instances)) == expected;
    }
}

/// A verifier adapter the factory deployed over a PinnedVerifier standing in for EZKL's: pinned to
/// the circuit instances the adapter lays the market's out as, for `free` values given.
function pinThrough(PinnedVerifier halo2, EzklCircuitVerifier adapter, uint256[] memory instances, uint256[] memory free)
    returns (bytes memory proof)
{
    return pinThrough(halo2, adapter, instances, free, hex"01");
}

/// As above, for a Halo2 proof whose bytes the adapter reads (the KZG round adapter's points).
function pinThrough(
    PinnedVerifier halo2,
    EzklCircuitVerifier adapter,
    uint256[] memory instances,
    uint256[] memory free,
    bytes memory halo2Proof
) returns (bytes memory proof) {
    (bool ok, uint256[] memory circuit) = adapter.circuitInstancesFor(instances, free, halo2Proof);
    require(ok, "instances do not fit the circuit");
    halo2.pin(circuit);
    proof = abi.encode(halo2Proof, free);
}

/// The settlement adapter's `proof` for one proof per round (EzklSettlementVerifier), pinned as
/// pinThrough pins a round's.
function pinSettlement(PinnedVerifier halo2, EzklCircuitVerifier adapter, uint256[] memory instances, uint256[] memory free)
    returns (bytes memory proof)
{
    (bool ok, uint256[] memory circuit) = adapter.circuitInstancesFor(instances, free, hex"01");
    require(ok, "instances do not fit the circuit");
    halo2.pin(circuit);
    bytes[] memory proofs = new bytes[](1);
    proofs[0] = hex"01";
    proof = abi.encode(proofs, free);
}

/// Accepts any instance vector allowed by the test: the stand-in for a circuit several of whose
/// proofs one call checks, each with its own instances.
contract AllowedVerifier is IProofVerifier {
    mapping(bytes32 => bool) public allowed;

    function allow(uint256[] calldata instances) external {
        allowed[keccak256(abi.encode(instances))] = true;
    }

    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool) {
        return proof.length > 0 && allowed[keccak256(abi.encode(instances))];
    }
}

/// A trainer that is a contract and tries to re-enter `withdraw` when paid.
contract ReentrantTrainer {
    DataMarket public market;
    bool public reentered;

    function join(DataMarket market_, bytes32 key, bytes32 seedCommitment) external {
        market = market_;
        market_.register(key, seedCommitment, bytes32(uint256(1)));
    }

    function reveal(bytes32 seed) external {
        market.reveal(seed);
    }

    function submit(uint32 round, bytes32 commitment) external {
        market.submit(round, bytes32(uint256(7)), commitment);
    }

    function withdraw() external {
        market.withdraw();
    }

    receive() external payable {
        reentered = true;
        market.withdraw(); // reverts: ReentrancyGuardReentrantCall
    }
}

abstract contract MarketFixture is TestBase {
    MarketFactory internal factory;
    VerifierFactory internal verifiers;
    address internal owner = address(0xA11CE);
    address internal aggregator = address(0xA66);
    address internal stranger = address(0x5757);
    address[] internal trainerAddrs;

    uint256 internal constant RP = 0.01 ether;
    uint256 internal constant FEE = 0.05 ether;
    uint256 internal constant POOL_LOW = 0.2 ether;
    uint256 internal constant POOL_HIGH = 0.5 ether;
    uint64 internal constant REG_WINDOW = 1 days;
    uint64 internal constant REVEAL_WINDOW = 1 hours;
    uint64 internal constant ROUND = 1 hours;
    uint64 internal constant AGG_WINDOW = 2 hours;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        verifiers = new VerifierFactory();
        factory = new MarketFactory(verifiers);
        vm.deal(owner, 1_000 ether);
    }

    function trainerAt(uint256 i) internal pure returns (address) {
        return address(uint160(0x7000 + i));
    }

    function seedOf(uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("seed", i));
    }

    function commitmentOf(uint32 round, uint256 i) internal pure returns (bytes32) {
        return bytes32(uint256(keccak256(abi.encode("update", round, i))) >> 8); // < FIELD
    }

    function spec(uint32 l, uint32 t, address roundVerifier, address settlementVerifier)
        internal
        view
        returns (IDataMarket.Spec memory s)
    {
        uint16[] memory thresholds = new uint16[](2);
        thresholds[0] = 8000;
        thresholds[1] = 9000;
        uint256[] memory pools = new uint256[](2);
        pools[0] = POOL_LOW;
        pools[1] = POOL_HIGH;
        s = IDataMarket.Spec({
            specCid: keccak256("spec"),
            dataCid: keccak256("data"),
            dataCommitment: bytes32(uint256(keccak256("data commitment")) >> 8),
            aggregator: aggregator,
            aggregatorKey: keccak256("aggregator key"),
            trainers: l,
            rounds: t,
            registrationDeadline: uint64(block.timestamp) + REG_WINDOW,
            revealWindow: REVEAL_WINDOW,
            roundDuration: ROUND,
            aggregatorWindow: AGG_WINDOW,
            participationReward: RP,
            aggregatorFee: FEE,
            trainerBond: 0,
            accuracyThresholds: thresholds,
            rewardPools: pools,
            roundVerifier: roundVerifier,
            settlementVerifier: settlementVerifier
        });
    }

    function required(uint32 l, uint32 t) internal pure returns (uint256) {
        return uint256(l) * t * RP + POOL_HIGH + FEE;
    }

    function create(uint32 l, uint32 t) internal returns (DataMarket) {
        return createWith(spec(l, t, address(0), address(0)), required(l, t));
    }

    function createWith(IDataMarket.Spec memory s, uint256 value) internal returns (DataMarket market) {
        vm.prank(owner);
        market = DataMarket(factory.createMarket{value: value}(s));
        delete trainerAddrs;
        for (uint256 i = 0; i < s.trainers; ++i) {
            trainerAddrs.push(trainerAt(i));
        }
    }

    function registerAll(DataMarket market) internal {
        for (uint256 i = 0; i < trainerAddrs.length; ++i) {
            registerOne(market, i);
        }
    }

    function registerOne(DataMarket market, uint256 i) internal {
        address t = trainerAddrs[i];
        bytes32 commitment = market.seedCommitmentFor(t, seedOf(i));
        uint256 bond = market.trainerBond();
        vm.deal(t, t.balance + bond);
        vm.prank(t);
        market.register{value: bond}(keccak256(abi.encode("key", i)), commitment, bytes32(uint256(1 + i)));
    }

    function revealAll(DataMarket market) internal {
        for (uint256 i = 0; i < trainerAddrs.length; ++i) {
            vm.prank(trainerAddrs[i]);
            market.reveal(seedOf(i));
        }
    }

    function start(uint32 l, uint32 t) internal returns (DataMarket market) {
        market = create(l, t);
        registerAll(market);
        revealAll(market);
    }

    function openRound(DataMarket market) internal returns (uint32 round) {
        if (market.splitSeed() == bytes32(0)) vm.roll(block.number + 1); // the seed block's hash is known
        bytes32 modelCid = keccak256(abi.encode("model", market.currentRound()));
        vm.prank(aggregator);
        market.openRound(modelCid, bytes32(uint256(42)));
        round = market.currentRound();
    }

    function submitMask(DataMarket market, uint32 round, uint256 mask) internal {
        for (uint256 i = 0; i < trainerAddrs.length; ++i) {
            if (mask >> i & 1 == 1) {
                vm.prank(trainerAddrs[i]);
                market.submit(round, keccak256(abi.encode("cid", round, i)), commitmentOf(round, i));
            }
        }
    }

    function finalize(DataMarket market, uint32 round, uint128 benign) internal {
        vm.prank(aggregator);
        market.finalizeRound(round, keccak256(abi.encode("agg", round)), bytes32(uint256(1000 + round)), benign, "");
    }

    /// A market of `l` trainers and `t` rounds whose rounds are proven through a factory adapter
    /// over `halo2`, with round 1 open and every trainer's submission in.
    function provenRoundOpen(PinnedVerifier halo2, uint32 l, uint32 t)
        internal
        returns (DataMarket market, EzklCircuitVerifier rv, uint32 round)
    {
        rv = EzklCircuitVerifier(verifiers.deployRoundVerifier(halo2, l));
        market = createWith(spec(l, t, address(rv), address(0)), required(l, t));
        registerAll(market);
        revealAll(market);
        round = openRound(market);
        submitMask(market, round, (uint256(1) << l) - 1);
    }

    /// Open, let everyone in `submitted` submit, finalize with `benign`.
    function playRound(DataMarket market, uint256 submitted, uint128 benign) internal returns (uint32 round) {
        round = openRound(market);
        submitMask(market, round, submitted);
        if (submitted != (uint256(1) << trainerAddrs.length) - 1) vm.warp(block.timestamp + ROUND + 1);
        finalize(market, round, benign);
    }

    function withdrawAll(DataMarket market) internal {
        address[] memory accounts = new address[](trainerAddrs.length + 2);
        for (uint256 i = 0; i < trainerAddrs.length; ++i) {
            accounts[i] = trainerAddrs[i];
        }
        accounts[trainerAddrs.length] = owner;
        accounts[trainerAddrs.length + 1] = aggregator;
        for (uint256 i = 0; i < accounts.length; ++i) {
            if (market.owed(accounts[i]) > 0) {
                vm.prank(accounts[i]);
                market.withdraw();
            }
        }
        assertEq(address(market).balance, 0, "funds left in the market");
        assertEq(market.totalOwed(), 0, "owed left");
    }
}
