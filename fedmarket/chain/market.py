"""Typed bindings of MarketFactory, VerifierFactory and DataMarket over the chain adapter."""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD as _DISCARD

from fedmarket.chain.adapter import Chain, TxResult
from fedmarket.chain.board import BoardClient
from fedmarket.errors import ChainError, ChainUnavailableError, ProtocolError, VerifierMismatchError
from fedmarket.store.cid import cid_text, digest_of
from fedmarket_schemas.market import MarketSpec
from fedmarket_schemas.rounds import Rejection, Submission

PHASES = ("Registration", "SeedReveal", "Training", "Settlement", "Settled", "Cancelled", "Aborted")
FINAL_PHASES = ("Settled", "Cancelled", "Aborted")  # nothing left but withdrawals


def contribution_step(round: int) -> int:
    """DataMarket.domain's step for round `round`'s contribution proof (type(uint32).max - round)."""
    return 2**32 - 1 - round


def hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def b32(value: str | bytes) -> bytes:
    raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def seed_commitment(chain_id: int, market: str, trainer: str, seed: bytes) -> bytes:
    """What `DataMarket.seedCommitmentFor` returns; computed locally so the seed never leaves
    the trainer before it is revealed."""
    encoded = abi_encode(
        ["uint256", "address", "address", "bytes32"],
        [chain_id, Web3.to_checksum_address(market), Web3.to_checksum_address(trainer), seed],
    )
    return keccak(encoded)


VERIFIER_KINDS = ("none", "round", "settlement", "kzg_round", "split_round")  # IVerifierFactory.VerifierKind


@dataclass(frozen=True)
class VerifierInfo:
    """What a verifier adapter of the factory checks (kind "none": not the factory's)."""

    kind: str
    trainers: int
    samples: int
    chunks: int  # a split round's parameter chunks; a settlement's proofs per round; zero otherwise
    halo2: str
    halo2_code_hash: str


@dataclass(frozen=True)
class RoundState:
    round: int
    deadline: int  # zero: not opened
    finalized: bool
    verified: bool
    benign_mask: int


class FactoryClient:
    """A market factory and the verifier factory it trusts (MarketFactory.verifiers)."""

    def __init__(self, chain: Chain, address: str):
        self.chain = chain
        self.contract = chain.contract("MarketFactory", address)
        self.address = self.contract.address
        self._verifiers: Contract | None = None

    @classmethod
    def deploy(cls, chain: Chain, account: LocalAccount) -> tuple[FactoryClient, TxResult]:
        """Both factories: VerifierFactory, then the MarketFactory that trusts it (one contract
        cannot hold both's creation code under EIP-3860); the result is the market factory's."""
        verifiers, _ = chain.deploy(account, "VerifierFactory")
        contract, result = chain.deploy(account, "MarketFactory", verifiers.address)
        return cls(chain, contract.address), result

    @property
    def verifiers(self) -> Contract:
        """The verifier factory this market factory checks verifiers with, once its code is found
        to be VerifierFactory's (which has no immutables): a factory deployed over another
        contract could vouch for any verifier (VerifierMismatchError)."""
        if self._verifiers is None:
            address = self.chain.call(self.contract.functions.verifiers())
            if self.chain.code(address) != self.chain.runtime_code_of("VerifierFactory"):
                raise VerifierMismatchError(
                    f"the market factory {self.address} trusts verifiers from {address}, which is not VerifierFactory's code"
                )
            self._verifiers = self.chain.contract("VerifierFactory", address)
        return self._verifiers

    def create_market(self, account: LocalAccount, spec: MarketSpec, deposit: int) -> tuple[MarketClient, TxResult]:
        deadline = self.chain.now() + spec.registration_window_s
        args = (
            digest_of(spec.task_cid),
            digest_of(spec.data_cid),
            b32(spec.data_commitment),
            Web3.to_checksum_address(spec.aggregator),
            b32(spec.aggregator_key),
            spec.trainers,
            spec.rounds,
            deadline,
            spec.reveal_window_s,
            spec.round_duration_s,
            spec.aggregator_window_s,
            spec.participation_reward_wei,
            spec.aggregator_fee_wei,
            spec.trainer_bond_wei,
            list(spec.schedule.thresholds_bps),
            list(spec.schedule.pools_wei),
            Web3.to_checksum_address(spec.round_verifier),
            Web3.to_checksum_address(spec.settlement_verifier),
        )
        result = self.chain.transact(account, self.contract.functions.createMarket(args), value=deposit)
        (event,) = self.contract.events.MarketCreated().process_receipt(result.receipt, errors=_DISCARD)
        return MarketClient(self.chain, event["args"]["market"]), result

    def implementation(self) -> str:
        return self.chain.call(self.contract.functions.implementation())

    def secure_aggregation(self) -> BoardClient:
        """The board where this factory's secure-aggregation markets publish keys and shares."""
        return BoardClient(self.chain, self.chain.call(self.contract.functions.secureAggregation()))

    def deploy_round_verifier(
        self, account: LocalAccount, halo2: str, trainers: int, *, kzg: bool = False
    ) -> tuple[str, TxResult]:
        """The round verifier adapter for `trainers` slots over EZKL's verifier `halo2`, deployed
        and recorded by this factory (a market may name only such adapters); `kzg`: for the round
        circuit whose inputs are under KZG commitments (EzklKzgRoundVerifier)."""
        functions = self.verifiers.functions
        deploy = functions.deployKzgRoundVerifier if kzg else functions.deployRoundVerifier
        return self._deployed_verifier(self.chain.transact(account, deploy(Web3.to_checksum_address(halo2), trainers)))

    def deploy_split_round_verifier(
        self, account: LocalAccount, halo2: str, chunk_halo2: str, trainers: int, chunks: int
    ) -> tuple[str, TxResult]:
        """The adapter of a round proven in `chunks` parameter chunks (EzklSplitRoundVerifier):
        `halo2` is EZKL's verifier of the rule circuit, `chunk_halo2` of the chunk circuit."""
        fn = self.verifiers.functions.deploySplitRoundVerifier(
            Web3.to_checksum_address(halo2), Web3.to_checksum_address(chunk_halo2), trainers, chunks
        )
        return self._deployed_verifier(self.chain.transact(account, fn))

    def deploy_settlement_verifier(
        self, account: LocalAccount, halo2: str, trainers: int, samples: int, parts: int = 1
    ) -> tuple[str, TxResult]:
        """The settlement adapter (EzklSettlementVerifier): `halo2` is EZKL's verifier of the
        settlement circuit over `samples` test rows, a round's test rows proven in `parts` proofs."""
        fn = self.verifiers.functions.deploySettlementVerifier(
            Web3.to_checksum_address(halo2), trainers, samples, parts
        )
        return self._deployed_verifier(self.chain.transact(account, fn))

    def _deployed_verifier(self, result: TxResult) -> tuple[str, TxResult]:
        (event,) = self.verifiers.events.VerifierDeployed().process_receipt(result.receipt, errors=_DISCARD)
        return event["args"]["adapter"], result

    def verifier_info(self, adapter: str) -> VerifierInfo:
        kind, trainers, samples, chunks, halo2, code_hash = self.chain.call(
            self.verifiers.functions.verifierInfo(Web3.to_checksum_address(adapter))
        )
        return VerifierInfo(VERIFIER_KINDS[kind], int(trainers), int(samples), int(chunks), halo2, hex32(code_hash))

    def is_market(self, address: str) -> bool:
        return bool(self.chain.call(self.contract.functions.isMarket(Web3.to_checksum_address(address))))

    def markets_of(self, owner: str) -> list[str]:
        return list(self.chain.call(self.contract.functions.marketsOf(Web3.to_checksum_address(owner))))

    def markets_aggregated_by(self, aggregator: str, from_block: int = 0, to_block: int | str = "latest") -> list[str]:
        """The markets this factory created with `aggregator` in [from_block, to_block], oldest
        first (its MarketCreated logs, read in pages)."""
        logs = self.chain.events(
            self.contract, "MarketCreated", from_block, to_block, aggregator=Web3.to_checksum_address(aggregator)
        )
        return [log["args"]["market"] for log in logs]


class MarketClient:
    def __init__(self, chain: Chain, address: str, block: int | str = "latest"):
        self.chain = chain
        self.contract = chain.contract("DataMarket", address)
        self.address = self.contract.address
        self._f = self.contract.functions
        self._creation_block: int | None = None
        self.block = block  # what every read and event query sees: "latest", or one block

    def at_head(self) -> MarketClient:
        """This market as of the chain's head now: every later read and event query sees that one
        state, as a check that compares events with views needs while others keep transacting."""
        return MarketClient(self.chain, self.address, self.chain.head())

    # ------------------------------------------------------------ transactions
    def register(self, account: LocalAccount, encryption_key: bytes, seed: bytes, summary_cid: str) -> TxResult:
        """Register with a commitment to `seed`, which the trainer keeps secret until `reveal`,
        paying the market's trainer bond (returned at the reveal)."""
        commitment = seed_commitment(self.chain.chain_id, self.address, account.address, seed)
        fn = self._f.register(b32(encryption_key), commitment, digest_of(summary_cid))
        return self.chain.transact(account, fn, value=self.trainer_bond())

    def reveal(self, account: LocalAccount, seed: bytes) -> TxResult:
        return self.chain.transact(account, self._f.reveal(b32(seed)))

    def close_reveal(self, account: LocalAccount) -> TxResult:
        return self.chain.transact(account, self._f.closeReveal())

    def fix_split_seed(self, account: LocalAccount) -> TxResult:
        return self.chain.transact(account, self._f.fixSplitSeed())

    def open_round(self, account: LocalAccount, model_cid: str, model_commitment: str) -> TxResult:
        return self.chain.transact(account, self._f.openRound(digest_of(model_cid), b32(model_commitment)))

    def submit(self, account: LocalAccount, round: int, cid: str, commitment: str) -> TxResult:
        return self.chain.transact(account, self._f.submit(round, digest_of(cid), b32(commitment)))

    def finalize_round(
        self,
        account: LocalAccount,
        round: int,
        aggregate_cid: str,
        aggregate_commitment: str,
        benign_mask: int,
        proof: bytes = b"",
    ) -> TxResult:
        fn = self._f.finalizeRound(round, digest_of(aggregate_cid), b32(aggregate_commitment), benign_mask, proof)
        return self.chain.transact(account, fn)

    def exclude(self, account: LocalAccount, round: int, exclusions: dict[int, Rejection]) -> TxResult:
        """Exclude round `round`'s submissions at these trainer indices, each with its reason and,
        for the reasons that carry it, its key as evidence."""
        entries = [
            (index, r.reason.code, b32(r.key) if r.key else bytes(32)) for index, r in sorted(exclusions.items())
        ]
        return self.chain.transact(account, self._f.exclude(round, entries))

    def settle(self, account: LocalAccount, accuracy_bps: int, contributions: list[int]) -> TxResult:
        return self.chain.transact(account, self._f.settle(accuracy_bps, contributions))

    def prove_contributions(
        self, account: LocalAccount, round: int, accuracy_bps: int, contributions: list[int], proof: bytes
    ) -> TxResult:
        return self.chain.transact(account, self._f.proveContributions(round, accuracy_bps, contributions, proof))

    def cancel(self, account: LocalAccount) -> TxResult:
        return self.chain.transact(account, self._f.cancel())

    def force_settle(self, account: LocalAccount) -> TxResult:
        return self.chain.transact(account, self._f.forceSettle())

    def withdraw(self, account: LocalAccount) -> TxResult:
        return self.chain.transact(account, self._f.withdraw())

    # ------------------------------------------------------------ reads
    def _read(self, name: str, *args):
        return self.chain.call(getattr(self._f, name)(*args), block=self.block)

    def phase(self) -> str:
        return PHASES[self._read("phase")]

    def current_round(self) -> int:
        return int(self._read("currentRound"))

    def trainers(self) -> list[str]:
        return list(self._read("trainers"))

    def active_mask(self) -> int:
        return int(self._read("activeMask"))

    def active_trainers(self) -> list[str]:
        mask = self.active_mask()
        return [t for i, t in enumerate(self.trainers()) if mask >> i & 1]

    def is_active(self, trainer: str) -> bool:
        return bool(self._read("isActive", Web3.to_checksum_address(trainer)))

    def encryption_key(self, trainer: str) -> bytes:
        return bytes(self._read("encryptionKeyOf", Web3.to_checksum_address(trainer)))

    def encryption_keys(self, trainers: list[str]) -> dict[str, bytes]:
        """Each trainer's registered key, read in one batch."""
        calls = [(Web3.to_checksum_address(t),) for t in trainers]
        keys = self.chain.call_many(self.contract, "encryptionKeyOf", calls, block=self.block)
        return {t: bytes(k) for t, k in zip(trainers, keys)}

    def spec_cid(self) -> str:
        return cid_text(bytes(self._read("specCid")))

    def data_cid(self) -> str:
        return cid_text(bytes(self._read("dataCid")))

    def round_count(self) -> int:
        return int(self._read("roundCount"))

    def aggregator(self) -> str:
        return self._read("aggregator")

    def aggregator_key(self) -> bytes:
        return bytes(self._read("aggregatorKey"))

    def reveal_deadline(self) -> int:
        return int(self._read("revealDeadline"))

    def owner(self) -> str:
        return self._read("owner")

    def deposit(self) -> int:
        return int(self._read("deposit"))

    def owed(self, account: str) -> int:
        return int(self._read("owed", Web3.to_checksum_address(account)))

    def total_owed(self) -> int:
        return int(self._read("totalOwed"))

    def undistributed(self) -> int:
        return int(self._read("undistributed"))

    def bonds_held(self) -> int:
        """Trainer bonds received and not yet credited back or to the owner."""
        return int(self._read("bondsHeld"))

    def benign_rounds(self, index: int) -> int:
        return int(self._read("benignRounds", index))

    def split_seed(self) -> bytes:
        """The seed of the owner's validation/test split, fixed by the trainers' revealed seeds and
        a block hash once training started (the first round's opening fixes it)."""
        seed = bytes(self._read("splitSeed"))
        if not any(seed):
            raise ProtocolError(f"market {self.address} has no split seed yet (phase {self.phase()})")
        return seed

    def seed_block(self) -> int:
        """The block whose hash, with the revealed seeds, fixes the split seed (zero before training)."""
        return int(self._read("seedBlock"))

    def trainer_bond(self) -> int:
        return int(self._read("trainerBond"))

    def factory(self) -> str:
        return self._read("factory")

    def aggregator_window(self) -> int:
        return int(self._read("aggregatorWindow"))

    def aggregator_deadline(self) -> int:
        """When the aggregator's window for the current round closes (chain time; zero before round 1)."""
        return int(self._read("aggregatorDeadline"))

    def creation_block(self) -> int:
        """The block that created this market: where every read of its logs starts."""
        if self._creation_block is None:
            self._creation_block = int(self._read("creationBlock"))
        return self._creation_block

    def rloo_seed(self) -> bytes:
        return bytes(self._read("rlooSeed"))

    def proven_rounds(self) -> int:
        """Rounds whose contributions are proven on chain, from round 1 on."""
        return int(self._read("provenRounds"))

    def model_commitment(self) -> str:
        return hex32(self._read("modelCommitment"))

    def reward_pool_for(self, accuracy_bps: int) -> int:
        return int(self._read("rewardPoolFor", accuracy_bps))

    def round_verifier(self) -> str | None:
        address = self._read("roundVerifier")
        return None if int(address, 16) == 0 else address

    def settlement_verifier(self) -> str | None:
        address = self._read("settlementVerifier")
        return None if int(address, 16) == 0 else address

    def domain(self, step: int) -> int:
        """The value a proof for round `step` (or for contributions, `contribution_step`) binds to this market."""
        return int(self._read("domain", step))

    def round_instances(self, round: int, aggregate_commitment: str, benign_mask: int) -> list[int]:
        """The instances the market gives its round verifier for this claim (DataMarket.roundInstances)."""
        return [int(v) for v in self._read("roundInstances", round, b32(aggregate_commitment), benign_mask)]

    def round_state(self, round: int) -> RoundState:
        deadline, finalized, verified, benign_mask = self._read("getRound", round)
        return RoundState(round, int(deadline), bool(finalized), bool(verified), int(benign_mask))

    def round_states(self, rounds: list[int]) -> list[RoundState]:
        """`round_state` of each of `rounds`, in order: one batch on a node."""
        rows = self.chain.call_many(self.contract, "getRound", [(r,) for r in rounds], block=self.block)
        return [RoundState(r, int(d), bool(f), bool(v), int(m)) for r, (d, f, v, m) in zip(rounds, rows)]

    def masks(self, name: str, rounds: list[int]) -> list[int]:
        """`submittedMask` or `excludedMask` (`name`) of each of `rounds`, in order: one batch."""
        if name not in ("submittedMask", "excludedMask"):
            raise ProtocolError(f"{name} is not a per-round mask of the market")
        return [int(m) for m in self.chain.call_many(self.contract, name, [(r,) for r in rounds], block=self.block)]

    def finalized_rounds(self) -> dict[int, tuple[str, str]]:
        """Round -> (aggregate CID, hash of the transaction that finalized it), from one scan of
        the RoundFinalized events (the latest of a round wins)."""
        return {
            int(log["args"]["round"]): (
                cid_text(bytes(log["args"]["aggregateCid"])),
                "0x" + bytes(log["transactionHash"]).hex(),
            )
            for log in self.events("RoundFinalized")
        }

    def submitted_mask(self, round: int) -> int:
        return int(self._read("submittedMask", round))

    def excluded_mask(self, round: int) -> int:
        """Bit i set: trainer i's submission in `round` was excluded."""
        return int(self._read("excludedMask", round))

    def first_submissions(self) -> dict[str, tuple[int, str]]:
        """CID -> (round, trainer) of the first submission of it in chain order: a later one of the
        same CID replays bytes sealed for that one."""
        first: dict[str, tuple[int, str]] = {}
        for log in self.events("UpdateSubmitted"):
            cid = cid_text(bytes(log["args"]["cid"]))
            first.setdefault(cid, (int(log["args"]["round"]), log["args"]["trainer"]))
        return first

    def commitment_of(self, round: int, index: int) -> str:
        return hex32(self._read("commitmentOf", round, index))

    def model_cid(self, round: int) -> str:
        """CID of round `round`'s global model, from its `RoundOpened` event (CIDs live in events)."""
        logs = self.events("RoundOpened", round=round)
        if not logs:
            raise ProtocolError(f"round {round} of market {self.address} has not been opened")
        return cid_text(bytes(logs[-1]["args"]["modelCid"]))

    def submissions(self, round: int) -> list[Submission]:
        """This round's submissions: CIDs from the events, each checked against the commitment the
        contract stored (an event can be read from any node; storage is the authority)."""
        trainers = self.trainers()
        index_of = {t: i for i, t in enumerate(trainers)}
        out = []
        logs = self.events("UpdateSubmitted", round=round)
        calls = [(round, index_of[log["args"]["trainer"]]) for log in logs]
        stored = [hex32(c) for c in self.chain.call_many(self.contract, "commitmentOf", calls, block=self.block)]
        for log, in_storage in zip(logs, stored):
            trainer = log["args"]["trainer"]
            index = index_of[trainer]
            commitment = hex32(log["args"]["commitment"])
            if in_storage != commitment:
                raise ProtocolError(f"event and storage disagree on {trainer}'s round-{round} commitment")
            out.append(
                Submission(
                    round=round,
                    trainer=trainer,
                    index=index,
                    cid=cid_text(bytes(log["args"]["cid"])),
                    commitment=commitment,
                )
            )
        return sorted(out, key=lambda s: s.index)

    def events(self, name: str, *, from_block: int | None = None, **filters) -> list:
        """This market's `name` events whose indexed arguments equal `filters`, in chain order,
        read from its creation block (or `from_block`) in bounded pages."""
        start = self.creation_block() if from_block is None else max(from_block, self.creation_block())
        return self.chain.events(self.contract, name, start, self.block, **filters)

    def last_event(self, name: str, **filters) -> tuple[dict, TxResult] | None:
        """The latest `name` event matching `filters` and the transaction that emitted it: how a
        rerun finds a transaction that already landed instead of sending it again."""
        logs = self.events(name, **filters)
        if not logs:
            return None
        log = logs[-1]
        return dict(log["args"]), self.chain.receipt(log["transactionHash"])

    def aggregate_of(self, round: int) -> tuple[str, str]:
        """(CID, commitment) of round `round`'s finalized aggregate."""
        found = self.last_event("RoundFinalized", round=round)
        if found is None:
            raise ProtocolError(f"round {round} of market {self.address} is not finalized")
        args, _ = found
        return cid_text(bytes(args["aggregateCid"])), hex32(args["aggregateCommitment"])

    def call_that_emitted(self, log) -> tuple[str, dict]:
        """(function name, arguments) of the market call whose transaction emitted `log`."""
        data = self.chain.transaction_input(log["transactionHash"])
        try:
            fn, args = self.contract.decode_function_input(data)
        except ValueError as exc:  # a call through another contract: its calldata is not the market's
            raise ProtocolError(
                f"transaction {bytes(log['transactionHash']).hex()} is not a call of the market"
            ) from exc
        return fn.fn_name, dict(args)

    def verifier_accepts(self, verifier: str, proof: bytes, instances: list[int]) -> bool:
        """Whether `verifier` accepts `proof` for `instances`, asked read-only; a revert is a
        rejection, as in the market's own `_accepts`."""
        adapter = self.chain.contract("EzklRoundVerifier", verifier)  # IProofVerifier's one function
        if not self.chain.has_code(verifier):
            return False
        try:
            return bool(self.chain.call(adapter.functions.verifyProof(proof, instances)))
        except ChainUnavailableError:
            raise
        except ChainError:  # a revert, decoded or not
            return False

    def submission_gas(self, round: int, from_block: int) -> int:
        """Gas the trainers spent on `submit` in this round, read from the events' receipts."""
        logs = self.events("UpdateSubmitted", from_block=from_block, round=round)
        return sum(r.gas_used for r in self.chain.receipts([log["transactionHash"] for log in logs]))

    def balance(self) -> int:
        return self.chain.balance(self.address, self.block)
