"""The one exception hierarchy of fedmarket. Every error a user can see derives from
`FedMarketError`, so callers catch one root (as with web3.py's `Web3Exception` and Prefect's
`PrefectException`) and still tell problems apart by subclass."""

from __future__ import annotations


class FedMarketError(Exception):
    """Root of every fedmarket error."""


class ConfigError(FedMarketError):
    """A setting is missing or inconsistent."""


# ---------------------------------------------------------------- content store
class StoreError(FedMarketError):
    """The content store failed or returned unusable content."""


class ContentNotFoundError(StoreError):
    """No content is stored under the CID."""


class CIDMismatchError(StoreError):
    """Bytes do not hash to the CID they were fetched or recorded under."""


class InvalidCIDError(StoreError):
    """A CID is malformed or not of the kind fedmarket stores (CIDv1, raw, sha2-256)."""


class StoreUnavailableError(StoreError):
    """The store backend could not be reached; retried by the flows."""


# ---------------------------------------------------------------- crypto
class CryptoError(FedMarketError):
    """Sealing or opening an update failed."""


class DecryptionError(CryptoError):
    """A ciphertext does not open: wrong key, wrong context (market, round, trainer), or tampered."""


class EnvelopeError(DecryptionError):
    """Bytes are not a sealed-update envelope of the current version (length, version byte, or an
    ephemeral key no exchange can use)."""


class KeyMismatchError(DecryptionError):
    """A key is not the one an envelope's header commits to."""


# ---------------------------------------------------------------- updates and data
class UpdateError(FedMarketError):
    """A model update is unusable."""


class MalformedUpdateError(UpdateError):
    """An update does not parse, or its tensors have the wrong names, shapes or dtypes."""


class NonFiniteUpdateError(UpdateError):
    """An update holds NaN or infinite values."""


class UpdateOutOfBoundsError(UpdateError):
    """An update is finite but outside what the task declares an update may look like."""


class PrivacyReportError(UpdateError):
    """An update of a DP-SGD task reports no privacy spent, or more than the task's budget."""


class PrivacyBudgetError(FedMarketError):
    """Training this round would take a trainer past the task's differential-privacy budget."""


class DataValidationError(FedMarketError):
    """Data does not meet the expectations declared by the task."""


# ---------------------------------------------------------------- chain
class DataFormatError(DataValidationError):
    """A data file that cannot be read as a table: unknown format, missing label column, a
    non-numeric cell, ragged rows, an image of another size."""


class ChainError(FedMarketError):
    """A chain call failed."""


class ChainUnavailableError(ChainError):
    """The node could not be reached; retried by the flows."""


class ContractRevertError(ChainError):
    """A contract call reverted. `error_name` and `error_args` hold the decoded custom error."""

    def __init__(self, function: str, error_name: str, error_args: dict | None = None):
        self.function = function
        self.error_name = error_name
        self.error_args = dict(error_args or {})
        details = ", ".join(f"{k}={v}" for k, v in self.error_args.items())
        super().__init__(f"{function} reverted with {error_name}({details})")


class ArtifactError(ChainError):
    """A compiled contract artifact is missing or stale."""


# ---------------------------------------------------------------- protocol
class ProtocolError(FedMarketError):
    """A party broke the market protocol off-chain (e.g. a submission missing from the store)."""


class CommitmentMismatchError(ProtocolError):
    """An opened update is not the one its trainer committed to on chain."""


# ---------------------------------------------------------------- secure aggregation
class SecureAggregationError(ProtocolError):
    """A secure-aggregation round cannot be unmasked from what was published (fedmarket/secagg)."""


class InvalidShareError(SecureAggregationError):
    """A revealed share, or a secret rebuilt from shares, is not the one its dealer committed to."""


class NotEnoughSharesError(SecureAggregationError):
    """Fewer valid shares of a secret were revealed than the threshold needs."""


# ---------------------------------------------------------------- proofs
class ZKError(FedMarketError):
    """The EZKL toolchain failed, or values cannot enter a circuit (off the grid, out of range)."""


class ProofMismatchError(ZKError):
    """The circuit's result differs from the float computation it proves (mask, accuracy)."""


class VerifierMismatchError(ZKError):
    """The market's verifier was not made from this machine's build of the circuit (another SRS,
    or another circuit): its proofs would be rejected on chain. Or the factory vouching for it
    does not run VerifierFactory's code."""


# ---------------------------------------------------------------- orchestration
class ResultsError(FedMarketError):
    """A persisted round result cannot be read: missing, or it does not open under this process's
    results key (fedmarket/vault.py)."""


class EventDeliveryError(FedMarketError):
    """Prefect did not confirm that it stored an event; the listener keeps its checkpoint and
    delivers the event again on its next poll."""
