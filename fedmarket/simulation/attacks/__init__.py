"""Attacks for simulation and tests: one module per kind, one base (`Attack`), registered by name."""

from fedmarket.simulation.attacks import (  # noqa: F401  (registration)
    adaptive,
    collusion,
    data_poisoning,
    lazy,
    model_poisoning,
    protocol,
)
from fedmarket.simulation.attacks.base import ATTACKS, Attack, AttackContext

# the demo's attackers, in order: Byzantine noise, sign flip, backdoor scaling, then round robin
DEMO_ATTACKS = ("noise", "sign_flip", "scale")


def default_attack_plan(malicious: int, attacks: tuple[str, ...] = DEMO_ATTACKS) -> list[str]:
    """One attack per attacker, round robin over `attacks`."""
    return [attacks[i % len(attacks)] for i in range(malicious)]


def model_attacks() -> list[str]:
    """The attacks the off-chain simulation can play: those on the submitted model."""
    return [name for name in ATTACKS.names() if not ATTACKS.get(name).on_chain]


__all__ = ["ATTACKS", "Attack", "AttackContext", "DEMO_ATTACKS", "default_attack_plan", "model_attacks"]
