"""Amounts as people read them."""

from __future__ import annotations

WEI_PER_ETH = 10**18


def eth(wei: int) -> str:
    """`wei` in ETH, to the micro-ether."""
    return f"{wei / WEI_PER_ETH:.6f}"
