"""Deliver chain events to Prefect, each exactly once.

`emit_event` is fire-and-forget, so delivery is confirmed by reading the events back from the
Prefect API: the sink returns only when the server has stored every event of the batch, and the
listener advances its checkpoint only then (fedmarket/chain/listener.py). Before emitting, it drops
the events whose ids the server already stored, which a listener restarted after a crash between
delivery and checkpoint would otherwise send again. Prefect's trigger service also ignores an id
it has seen, so a deployment trigger fires once per chain event.
"""

from __future__ import annotations

import time

from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.filters import EventFilter, EventIDFilter

from fedmarket.chain.listener import ChainEvent
from fedmarket.errors import EventDeliveryError

PAGE = 50  # the events API returns at most this many per page by default


def resource_of(event: ChainEvent, chain_id: int) -> dict[str, str]:
    resource = {
        "prefect.resource.id": f"fedmarket.market.{event.market}",
        "prefect.resource.name": f"market {event.market}",
        "fedmarket.market": event.market,
        "fedmarket.chain-id": str(chain_id),
    }
    if event.round is not None:
        resource["fedmarket.round"] = str(event.round)
    return resource


def related_of(event: ChainEvent) -> list[dict[str, str]]:
    accounts = {k: v for k, v in event.args.items() if k in ("trainer", "account", "owner", "aggregator")}
    return [
        {"prefect.resource.id": f"fedmarket.account.{address}", "prefect.resource.role": role}
        for role, address in accounts.items()
    ]


class PrefectEventSink:
    def __init__(self, chain_id: int, *, timeout_s: float = 60.0, poll_s: float = 0.5):
        self.chain_id, self.timeout_s, self.poll_s = chain_id, timeout_s, poll_s
        self.emitted = 0  # events sent by this sink (not those skipped as already stored)

    def __call__(self, events: list[ChainEvent]) -> None:
        ids = [e.id for e in events]
        with get_client(sync_client=True) as client:
            stored = self.stored(client, ids)
            for event in events:
                if event.id in stored:
                    continue
                sent = emit_event(
                    event=event.name,
                    resource=resource_of(event, self.chain_id),
                    related=related_of(event),
                    payload=event.payload,
                    id=event.id,
                )
                if sent is None:
                    raise EventDeliveryError(
                        f"Prefect did not accept event {event.name} {event.id} (logged above); is PREFECT_API_URL a Prefect server?"
                    )
                self.emitted += 1
            deadline = time.monotonic() + self.timeout_s
            while len(stored := self.stored(client, ids)) < len(set(ids)):
                if time.monotonic() > deadline:
                    missing = sorted(str(i) for i in set(ids) - stored)
                    raise EventDeliveryError(
                        f"Prefect has not stored {len(missing)} events after {self.timeout_s:.0f} s: {missing[:3]}"
                    )
                time.sleep(self.poll_s)

    @staticmethod
    def stored(client, ids: list) -> set:
        found = set()
        for i in range(0, len(ids), PAGE):
            page = client.read_events(EventFilter(id=EventIDFilter(id=ids[i : i + PAGE])), limit=PAGE)
            found.update(e.id for e in page.events)
        return found
