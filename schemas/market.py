"""What a project owner publishes: the task (stored by CID) and the market terms (on chain)."""

from __future__ import annotations

import math
import re
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# the contract's bounds (contracts/src/DataMarket.sol), checked here to name the problem first
MAX_TRAINERS = 128
MAX_ROUNDS = 1_000
MAX_WINDOW_S = 30 * 86_400
MAX_REGISTRATION_PERIOD_S = 90 * 86_400

Hex32 = str  # 0x-prefixed 32-byte hex
Address = str  # 0x-prefixed checksummed address
ZERO_ADDRESS = "0x" + "00" * 20


class ModelKind(str, Enum):
    lr = "lr"
    mlp = "mlp"
    cnn = "cnn"  # square grayscale images: in_features = side^2 pixels
    module = "module"  # the owner's own torch.nn.Module, by import path, its architecture pinned by hash


Range = float | tuple[float, ...]  # one bound for every feature, or one per feature
MODULE_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


def model_choice(choice: str) -> tuple[ModelKind, str | None]:
    """'lr' | 'mlp' | 'cnn' | 'module:package.module:Class' as (kind, import path); ValueError
    naming the choice otherwise."""
    if choice.startswith("module:"):
        path = choice.removeprefix("module:")
        if not MODULE_PATH.fullmatch(path):
            raise ValueError(f"{choice!r}: a module is named 'module:package.module:Class'")
        return ModelKind.module, path
    try:
        return ModelKind(choice), None
    except ValueError:
        raise ValueError(f"{choice!r} is not lr, mlp, cnn or module:package.module:Class") from None


class ModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ModelKind = ModelKind.lr
    in_features: int = Field(64, gt=0)
    classes: int = Field(10, gt=1)
    hidden: int = Field(32, gt=0, description="hidden width of the MLP; unused by LR")
    input_min: Range = Field(0.0, description="each feature is scaled from [input_min, input_max] to [0, 1]")
    input_max: Range = 16.0
    module: str | None = Field(
        None,
        description="kind module: 'package.module:Class', a torch.nn.Module built as Class(in_features, classes) "
        "that maps [batch, in_features] inputs scaled to [0, 1] to [batch, classes] logits",
    )
    architecture: str | None = Field(
        None,
        description="kind module: sha256 of the module's ONNX export without its weight values; every party "
        "refuses to build a module whose export hashes otherwise",
    )

    @model_validator(mode="after")
    def _inputs(self) -> ModelConfig:
        _check_range(self.input_min, self.input_max, self.in_features, "input")
        if (self.kind == ModelKind.module) != (self.module is not None):
            raise ValueError("a model of kind module names its module ('package.module:Class'), and only it does")
        if self.module is not None and not MODULE_PATH.fullmatch(self.module):
            raise ValueError(f"module {self.module!r} is not 'package.module:Class'")
        side = int(self.in_features**0.5 + 0.5)
        if self.kind == ModelKind.cnn and (side * side != self.in_features or side < 4):
            raise ValueError(
                f"a CNN reads square images of at least 4x4 pixels; {self.in_features} features are not one"
            )
        return self


class DifferentialPrivacy(BaseModel):
    """DP-SGD that the task requires of every trainer (fedmarket/ml/privacy.py): per-sample
    gradients clipped to `max_grad_norm`, Gaussian noise of `noise_multiplier` times it on each
    step, and a budget: a trainer refuses the round that would take its (epsilon, `delta`),
    counted by Opacus's RDP accountant over every round it trained in, past `epsilon_budget`."""

    model_config = ConfigDict(frozen=True)

    noise_multiplier: float = Field(gt=0)
    max_grad_norm: float = Field(1.0, gt=0)
    delta: float = Field(1e-5, gt=0, lt=1)
    epsilon_budget: float = Field(gt=0)


class TrainingConfig(BaseModel):
    """How every trainer trains a round. A round is at least `local_epochs` epochs and, without
    DP-SGD, at least `min_local_steps` SGD steps: a share of a few dozen rows takes a few steps an
    epoch, and a market of such shares would end its rounds well short of training on the pooled
    rows. Shares large enough for the steps train `local_epochs` epochs; every share takes about
    as many steps as the others, so none pulls the mean by training longer."""

    model_config = ConfigDict(frozen=True)

    local_epochs: int = Field(5, gt=0)
    min_local_steps: int = Field(100, ge=0, description="SGD steps a trainer takes each round at least")
    batch_size: int = Field(16, gt=0)
    learning_rate: float = Field(1.0, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    dp: DifferentialPrivacy | None = Field(None, description="DP-SGD required of every trainer; unset: plain SGD")

    @classmethod
    def for_model(cls, kind: ModelKind, **overrides) -> TrainingConfig:
        """Defaults per model, then `overrides` (validated): the MLP diverges under label skew at
        learning rate 1.0 (digits, Dirichlet(0.5): 0.51 accuracy after 10 rounds, 0.93 at 0.3);
        the CNN trains at 0.1 in batches of 8: more steps per round than 16 give, which a market's
        few rounds need."""
        rates = {ModelKind.lr: 1.0, ModelKind.mlp: 0.3, ModelKind.cnn: 0.1, ModelKind.module: 0.1}
        batches = {ModelKind.cnn: 8}
        return cls(**{"learning_rate": rates[kind], "batch_size": batches.get(kind, 16), **overrides})

    def batches_per_epoch(self, rows: int) -> int:
        """Minibatches an epoch over `rows` rows takes (the last one may be short)."""
        return math.ceil(rows / self.batch_size)

    def epochs_for(self, rows: int) -> int:
        """Epochs a trainer of `rows` rows trains each round: `local_epochs`, or as many more as
        `min_local_steps` takes. Under DP-SGD, `local_epochs`: every step spends the budget, and
        the noise a longer round needs for the same epsilon costs more than the steps give."""
        if self.dp is not None:
            return self.local_epochs
        return max(self.local_epochs, math.ceil(self.min_local_steps / self.batches_per_epoch(rows)))


def _check_range(low: Range, high: Range, count: int, what: str) -> None:
    for name, bound in ((f"{what}_min", low), (f"{what}_max", high)):
        if isinstance(bound, tuple) and len(bound) != count:
            raise ValueError(f"{name} has {len(bound)} values for {count} features")
    lows = low if isinstance(low, tuple) else (low,) * count
    highs = high if isinstance(high, tuple) else (high,) * count
    for i, (lo, hi) in enumerate(zip(lows, highs)):
        if not lo < hi:
            raise ValueError(f"{what}_min must be below {what}_max (feature {i}: {lo} >= {hi})")


class DataSchema(BaseModel):
    """What training data must look like; checked with great-expectations by every party, on the
    file as given (`fedmarket.ml.formats`). `fedmarket data profile FILE` proposes one."""

    model_config = ConfigDict(frozen=True)

    feature_count: int = Field(64, gt=0)
    feature_min: Range = 0.0
    feature_max: Range = 16.0
    labels: tuple[int, ...] = Field(tuple(range(10)), description="class indices 0..C-1")
    min_rows: int = Field(10, gt=0)
    feature_names: tuple[str, ...] | None = Field(None, description="the file's feature columns; unset: x0, x1, ...")
    label_column: str = "label"
    label_names: tuple[str, ...] | None = Field(
        None, description="the file's label value of each class index; unset: the values are the indices"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DataSchema:
        _check_range(self.feature_min, self.feature_max, self.feature_count, "feature")
        if self.feature_names is not None and len(self.feature_names) != self.feature_count:
            raise ValueError(f"feature_names lists {len(self.feature_names)} columns for {self.feature_count} features")
        if self.feature_names is not None and self.label_column in self.feature_names:
            raise ValueError(f"the label column {self.label_column!r} is also a feature")
        if self.label_names is not None and len(self.label_names) != len(self.labels):
            raise ValueError(f"label_names lists {len(self.label_names)} values for {len(self.labels)} labels")
        return self

    @property
    def columns(self) -> tuple[str, ...]:
        return self.feature_names or tuple(f"x{i}" for i in range(self.feature_count))

    @property
    def classes(self) -> int:
        return max(self.labels) + 1


class UpdateBounds(BaseModel):
    """What a trainer's model may look like, checked by the aggregator before any rule sees it:
    every entry within +-`max_abs`, and the update within `max_norm_ratio` times the start
    model's norm (at least 1). The defaults leave honest training orders of magnitude of room
    and refuse what only an attack makes: values so large that no rule's arithmetic can use them."""

    model_config = ConfigDict(frozen=True)

    max_abs: float = Field(1e3, gt=0)
    max_norm_ratio: float = Field(100.0, gt=0)


class Aggregation(str, Enum):
    """How the aggregator sees a round's updates."""

    plain = "plain"  # each update sealed to the aggregator, which opens it (sources/004)
    secure = "secure"  # pairwise-masked (fedmarket/secagg): only the survivors' sum is ever opened


# what a secure-aggregation task runs in place of the rules that read single updates
SECURE_RULES = {"detector": "none", "aggregator": "mean", "contribution": "inclusion"}


class TaskSpec(BaseModel):
    """The training task, stored in the content store; its CID is fixed on chain at creation."""

    model_config = ConfigDict(frozen=True)

    name: str = "digits"
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    data_schema: DataSchema = DataSchema()
    detector: str = Field(
        "two_stage_guarded", description="outlier rule, by registered name (fedmarket/algorithms/outliers)"
    )
    aggregator: str = Field(
        "mean", description="aggregation rule, by registered name (fedmarket/algorithms/aggregators)"
    )
    contribution: str = Field(
        "update_loo", description="contribution metric, by registered name (fedmarket/algorithms/contribution)"
    )
    validation_fraction: float = Field(0.5, gt=0, lt=1, description="share of the owner's data used for validation")
    update_bounds: UpdateBounds = UpdateBounds()
    test_chunk_rows: int | None = Field(
        None,
        gt=0,
        description="proven settlement: the owner's data is cut into chunks of this many rows, committed chunk by "
        "chunk, and the test set is the chunk the split seed picks (fedmarket/zk/settlement_proof.py); "
        "unset: validation_fraction splits",
    )
    test_chunk_parts: int = Field(
        1,
        ge=1,
        le=16,
        description="proven settlement: each round's test chunk is proven in this many proofs of equal rows "
        "(their counts add up), so a chunk past one proof's memory can be scored; the owner commits to every part",
    )
    init_seed: int = 0
    aggregation: Aggregation = Field(
        Aggregation.plain,
        description="secure: trainers mask their updates so that nobody sees one, only the survivors' mean; "
        "no per-trainer outlier rule then applies, and contributions are counted by inclusion",
    )

    norm_bound: float | None = Field(
        None,
        gt=0,
        description="secure aggregation: each trainer proves with EZKL that its model moved at most this far "
        "(L2) from the round's global model (fedmarket/zk/norm_proof.py); unset: no bound",
    )

    @model_validator(mode="before")
    @classmethod
    def _secure_defaults(cls, data):
        """A secure task's rules default to the only ones that read no single update."""
        if isinstance(data, dict) and data.get("aggregation") in (Aggregation.secure, "secure"):
            return {**SECURE_RULES, **{k: v for k, v in data.items() if v is not None}}
        return data

    @model_validator(mode="after")
    def _secure_rules(self) -> TaskSpec:
        if self.aggregation == Aggregation.secure:
            wrong = {k: getattr(self, k) for k, v in SECURE_RULES.items() if getattr(self, k) != v}
            if wrong:
                named = ", ".join(f"{k} {v!r}" for k, v in wrong.items())
                raise ValueError(f"secure aggregation never sees one update, so it cannot run {named}")
            if self.test_chunk_rows is not None:
                raise ValueError("secure aggregation has no proven settlement: its proof reads every update")
        elif self.norm_bound is not None:
            raise ValueError("a norm bound is proven in secure aggregation only (aggregation: secure)")
        return self

    @model_validator(mode="after")
    def _settlement_parts(self) -> TaskSpec:
        if self.test_chunk_parts > 1 and (self.test_chunk_rows is None or self.test_chunk_rows % self.test_chunk_parts):
            raise ValueError(
                f"test_chunk_parts {self.test_chunk_parts} needs test_chunk_rows that split into that many equal parts"
            )
        return self

    @model_validator(mode="after")
    def _model_fits_data(self) -> TaskSpec:
        model, data = self.model, self.data_schema
        if model.in_features != data.feature_count:
            raise ValueError(f"the model reads {model.in_features} features, the data has {data.feature_count}")
        if model.classes < data.classes:
            raise ValueError(f"the model has {model.classes} classes, the data's labels need {data.classes}")
        if (model.input_min, model.input_max) != (data.feature_min, data.feature_max):
            raise ValueError("the model must scale its inputs from the data schema's feature range")
        return self

    @classmethod
    def for_data(
        cls, schema: DataSchema, kind: ModelKind = ModelKind.lr, module: str | None = None, **fields
    ) -> TaskSpec:
        """A task whose model reads `schema`'s features and classes, scaled from its range
        (`module`: kind module's import path; its architecture is pinned by fedmarket.ml.models)."""
        model = ModelConfig(
            kind=kind,
            module=module,
            in_features=schema.feature_count,
            classes=schema.classes,
            input_min=schema.feature_min,
            input_max=schema.feature_max,
        )
        return cls(model=model, training=TrainingConfig.for_model(kind), data_schema=schema, **fields)


class RewardSchedule(BaseModel):
    """Accuracy-to-pool schedule: reaching `thresholds_bps[i]` makes `pools_wei[i]` the alpha of eq. (5)."""

    model_config = ConfigDict(frozen=True)

    thresholds_bps: tuple[int, ...]
    pools_wei: tuple[int, ...]

    @model_validator(mode="after")
    def _consistent(self) -> RewardSchedule:
        if len(self.thresholds_bps) != len(self.pools_wei):
            raise ValueError("thresholds_bps and pools_wei must have the same length")
        if list(self.thresholds_bps) != sorted(set(self.thresholds_bps)):
            raise ValueError("thresholds_bps must be strictly ascending")
        if any(not 0 <= t <= 10_000 for t in self.thresholds_bps):
            raise ValueError("thresholds are basis points in [0, 10000]")
        if any(p < 0 for p in self.pools_wei):
            raise ValueError("pools must be non-negative")
        if list(self.pools_wei) != sorted(self.pools_wei):
            raise ValueError("pools_wei must not decrease: a higher accuracy never pays a smaller pool")
        return self

    def pool_for(self, accuracy_bps: int) -> int:
        pool = 0
        for threshold, amount in zip(self.thresholds_bps, self.pools_wei):
            if accuracy_bps >= threshold:
                pool = amount
        return pool


class MarketSpec(BaseModel):
    """The terms fixed on chain by `MarketFactory.createMarket`."""

    model_config = ConfigDict(frozen=True)

    task_cid: str
    data_cid: str
    data_commitment: Hex32
    aggregator: Address
    aggregator_key: Hex32 = Field(description="aggregator's X25519 public key")
    trainers: int = Field(gt=0, le=MAX_TRAINERS, description="L; at most 128, one bit each in the on-chain masks")
    rounds: int = Field(gt=0, le=MAX_ROUNDS, description="T; at most 1,000, so settling stays far under a block's gas")
    registration_window_s: int = Field(86_400, gt=0, le=MAX_REGISTRATION_PERIOD_S)
    reveal_window_s: int = Field(
        3_600, gt=0, le=MAX_WINDOW_S, description="time trainers have to reveal their split seeds"
    )
    round_duration_s: int = Field(3_600, gt=0, le=MAX_WINDOW_S)
    aggregator_window_s: int = Field(3_600, gt=0, le=MAX_WINDOW_S)
    participation_reward_wei: int = Field(ge=0)
    aggregator_fee_wei: int = Field(0, ge=0)
    trainer_bond_wei: int = Field(
        0,
        ge=0,
        lt=2**96,
        description="paid at registration, returned at the seed's reveal, the owner's if never revealed: a seat "
        "taken without training costs the squatter",
    )
    schedule: RewardSchedule
    round_verifier: Address = ZERO_ADDRESS
    settlement_verifier: Address = ZERO_ADDRESS

    @field_validator("data_commitment", "aggregator_key")
    @classmethod
    def _hex32(cls, value: str) -> str:
        if not (value.startswith("0x") and len(value) == 66):
            raise ValueError("expected 0x-prefixed 32-byte hex")
        bytes.fromhex(value[2:])
        return value.lower()

    @model_validator(mode="after")
    def _settlement_needs_proven_rounds(self) -> MarketSpec:
        # the settlement circuit hashes each round's models and the final model with
        # Poseidon: only a market whose rounds are proven commits to them that way
        if int(self.settlement_verifier, 16) != 0 and int(self.round_verifier, 16) == 0:
            raise ValueError(
                "a settlement verifier needs a round verifier (the settlement proof binds Poseidon commitments)"
            )
        return self

    def max_payout(self) -> int:
        """The deposit must cover this: everyone benign every round, the largest pool, the fee."""
        return (
            self.trainers * self.rounds * self.participation_reward_wei
            + max(self.schedule.pools_wei, default=0)
            + self.aggregator_fee_wei
        )
