"""Attacks for simulation and tests: one module per kind, one base (`Attack`), registered by name."""

from fedmarket.simulation.attacks import collusion, data_poisoning, lazy, model_poisoning  # noqa: F401  (registration)
from fedmarket.simulation.attacks.base import ATTACKS, Attack, AttackContext

# the demo's attackers, in order: Byzantine noise, sign flip, backdoor scaling, then round robin
DEMO_ATTACKS = ("noise", "sign_flip", "scale")


def default_attack_plan(malicious: int) -> list[str]:
    return [DEMO_ATTACKS[i % len(DEMO_ATTACKS)] for i in range(malicious)]


__all__ = ["ATTACKS", "Attack", "AttackContext", "DEMO_ATTACKS", "default_attack_plan"]
