"""Run a round flow and kill its process at one step (`python -m tests.kill_round STEP MARKET
ROUND`): the step's code is replaced by `os._exit`, as a SIGKILL or a lost machine would end it.
Used by tests/test_resume.py; never by the product."""

from __future__ import annotations

import os
import sys

import fedmarket_flows.round as round_module
import fedmarket_tasks.load as load_module
from fedmarket.chain.market import MarketClient

KILLED = 86


def die(*args, **kwargs):
    os._exit(KILLED)


die.submit = die  # the flow submits its heavy steps to its task runner


def after_landing(original):
    def finalize_then_die(*args, **kwargs):
        original(*args, **kwargs)  # the transaction is mined ...
        os._exit(KILLED)  # ... and the process dies before the flow records anything

    return finalize_then_die


STEPS = {
    "fetch": (load_module, "fetch_submissions"),
    "validate": (load_module, "validate_updates"),
    "detect": (round_module, "detect_outliers"),
    "aggregate": (round_module, "aggregate"),
    "evaluate": (round_module, "evaluate"),
    "store": (round_module, "put_bytes"),
    "finalize": (round_module, "finalize_round"),
    "report": (round_module, "publish_round"),
}

if __name__ == "__main__":
    step, market, round = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if step == "finalized":
        MarketClient.finalize_round = after_landing(MarketClient.finalize_round)
    else:
        module, name = STEPS[step]
        setattr(module, name, die)
    round_module.round_flow(market, round)
    sys.exit(0)  # not killed: the test fails on this exit status
