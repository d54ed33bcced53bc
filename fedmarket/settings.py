"""Settings: environment variables prefixed `FEDMARKET_` (or a `.env`-style file named by
`FEDMARKET_SETTINGS_FILE`). Real components are selected here, never by editing code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from fedmarket.errors import ConfigError
from fedmarket_contracts import artifacts_dir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEDMARKET_", extra="ignore", env_ignore_empty=True)

    chain_rpc_url: str | None = Field(
        default=None, description="JSON-RPC URL of a node (anvil, testnet); unset: the in-process EVM"
    )
    chain_log_page_blocks: int = Field(
        default=10_000, ge=1, description="most blocks one eth_getLogs request covers (public nodes cap the range)"
    )
    chain_unreachable_s: float = Field(
        default=15.0,
        ge=0,
        description="how long a JSON-RPC request retries a node it cannot reach (restarting) before it fails",
    )
    store_backend: Literal["embedded", "kubo"] = Field(
        default="embedded", description="content store: a CID blockstore directory, or a Kubo node"
    )
    store_dir: Path = Field(default=Path(".fedmarket/blocks"), description="embedded store directory")
    kubo_api_url: HttpUrl = Field(default="http://127.0.0.1:5001", description="Kubo RPC API base URL")
    kubo_timeout_s: float = Field(default=30.0, description="how long the IPFS node may look for a block")
    ipfs_gateway_url: HttpUrl | None = Field(
        default=None, description="IPFS gateway the UI's artifacts link CIDs through (`{url}/ipfs/{cid}`)"
    )
    explorer_url: HttpUrl | None = Field(
        default=None, description="block explorer the UI's artifacts link transactions and addresses through"
    )
    artifacts_dir: Path = Field(
        default_factory=artifacts_dir,
        description="compiled contract artifacts; unset: the ones installed with fedmarket",
    )
    factory_address: str | None = Field(
        default=None, description="MarketFactory to use on a real node; unset: deploy one"
    )
    factory_from_block: int = Field(
        default=0,
        ge=0,
        description="the block the factory was deployed in: where the listener and advance-all first read its logs",
    )
    zk_cache_dir: Path = Field(
        default=Path(".fedmarket/zk"), description="EZKL builds (settings, keys, verifiers) by circuit hash"
    )
    zk_columns: int | None = Field(
        default=None,
        ge=1,
        le=8,
        description="EZKL columns per op: more is fewer rows but more columns to commit to, a larger verifier "
        "and more verification gas; 4 is about the EIP-170 limit. Unset: per circuit, the fewer of 1 and 2 "
        "that needs no larger domain (fedmarket/zk/ezkl/toolchain.py, choose_columns)",
    )
    node_modules_dir: Path | None = Field(
        default=None,
        description="node_modules holding npm `solc`, which compiles EZKL's generated verifiers; unset: the one "
        "beside the installed contracts (a checkout's, after `make setup`), else ./node_modules",
    )
    zk_srs_path: Path | None = Field(
        default=None, description="KZG SRS from a ceremony; unset: gen_srs locally (NOT FOR PRODUCTION)"
    )
    key_file: Path | None = Field(
        default=None, description="this party's key file (`fedmarket keys new`); mode 0600, never on the command line"
    )
    eth_private_key: SecretStr | None = Field(
        default=None, description="this party's Ethereum key, hex; instead of FEDMARKET_KEY_FILE"
    )
    box_private_key: SecretStr | None = Field(
        default=None, description="this party's X25519 key, hex; unset: derived from the Ethereum key"
    )
    results_dir: Path = Field(
        default=Path(".fedmarket/results"),
        description="the aggregator's sealed round results (opened updates), by round; shared by its Dask workers",
    )
    results_key: SecretStr | None = Field(
        default=None,
        description="AES-256 key, hex, sealing the aggregator's round results at rest; unset: a random one made "
        "once and kept in FEDMARKET_STATE_DIR",
    )
    state_dir: Path = Field(
        default=Path(".fedmarket/state"), description="listener checkpoints and other per-process state"
    )
    listener_max_blocks: int = Field(default=500, ge=1, description="most blocks the listener reads per poll")
    listener_confirmations: int = Field(
        default=0, ge=0, description="blocks the listener stays behind the head (reorg safety on public chains)"
    )
    poll_interval_s: float = Field(
        default=2.0, gt=0, description="how often listeners and trainer daemons poll the chain"
    )
    secagg_check_s: float = Field(
        default=10.0,
        ge=0,
        description="secure aggregation: how long the aggregator gives trainers to check newly posted key bundles "
        "and complain, and dealers to answer, before it opens the round they first count for",
    )
    secagg_reveal_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="secure aggregation: how long the aggregator waits for the last trainers' share reveals once a "
        "majority revealed (more reveals outvote wrong shares)",
    )
    dask_address: str | None = Field(
        default=None,
        description="Dask scheduler for the aggregator's heavy steps; 'local': a local cluster; unset: threads",
    )
    retries: int = Field(default=3, ge=0, description="retries of chain and store tasks")
    retry_delay_s: float = Field(default=1.0, ge=0, description="first retry delay; doubles each retry")


def load_settings() -> Settings:
    """Settings from the environment, plus the file named by FEDMARKET_SETTINGS_FILE if set."""
    env_file = os.environ.get("FEDMARKET_SETTINGS_FILE")
    if env_file and not Path(env_file).is_file():
        raise ConfigError(f"FEDMARKET_SETTINGS_FILE={env_file} does not exist")
    try:
        return Settings(_env_file=env_file) if env_file else Settings()
    except ValidationError as exc:
        problems = "; ".join(f"FEDMARKET_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
