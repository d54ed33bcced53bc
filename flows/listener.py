"""The aggregator's chain listener as a long-running flow: it follows a factory's markets (those
it aggregates, by default) and turns their logs into Prefect events, which the deployment
triggers in prefect.yaml turn into round, advance and settlement runs."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from fedmarket.chain.listener import ChainListener
from fedmarket.context import current_platform
from fedmarket.errors import EventDeliveryError
from fedmarket.eventsink import PrefectEventSink
from fedmarket_tasks.common import transient


def listener_for(factory: str | None, markets: list[str], follow_all: bool) -> ChainListener:
    platform = current_platform()
    settings = platform.settings
    factory = factory or settings.factory_address
    aggregator = None if follow_all else platform.me.address
    name = (factory or markets[0]).lower() if (factory or markets) else "none"
    return ChainListener(
        platform.chain,
        settings.state_dir / f"listener-{platform.chain.chain_id}-{name}.json",
        factory=factory,
        markets=list(markets),
        aggregator=aggregator,
        max_blocks=settings.listener_max_blocks,
        confirmations=settings.listener_confirmations,
        start_block=settings.factory_from_block,
        reveal_grace_s=settings.secagg_reveal_grace_s,
    )


@flow(name="fedmarket-listener", flow_run_name="listen")
def listener_flow(
    factory: str | None = None, markets: list[str] | None = None, follow_all: bool = False, polls: int | None = None
) -> int:
    """Poll the chain and emit Prefect events until stopped (or for `polls` polls). Follows the
    markets of `factory` (default FEDMARKET_FACTORY_ADDRESS) whose aggregator is this process's
    key, or all of them with `follow_all`, plus `markets`. Returns the events delivered."""
    logger = get_run_logger()
    listener = listener_for(factory, markets or [], follow_all)
    sink = PrefectEventSink(listener.chain.chain_id)
    interval = current_platform().settings.poll_interval_s
    delivered, done = 0, 0
    while polls is None or done < polls:
        try:
            count = listener.poll(sink)
        except Exception as exc:
            # the node or the Prefect server away (restarting): the checkpoint did not move, so
            # the next poll reads the same blocks again and delivers what this one could not
            if not (transient(exc) or isinstance(exc, EventDeliveryError)):
                raise
            logger.warning("poll from block %d failed, tried again: %s", listener.checkpoint.next_block, exc)
            count = 0
        delivered += count
        done += 1
        if count:
            logger.info("blocks up to %d: %d events", listener.checkpoint.next_block - 1, count)
        elif polls is None or done < polls:
            time.sleep(interval)
    return delivered
