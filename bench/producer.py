"""One request_pack producer for the latency benchmark, importable by a spawned process.

A producer is a process of its own with its own client and connection pool, as a host's
web or job processes would be; the benchmark starts several at once to measure requests
that contend for the database and the machine.
"""

from __future__ import annotations

import time

from reviewpacks.settings import Settings
from workers.client import ReviewPackClient

# psycopg prepares a statement on its sixth execution (prepare_threshold 5): the warm-up makes
# that many calls, so that no measured call runs a statement the connection has not prepared.
WARM_UP_CALLS = 6


def produce(env: dict, tenant_id: int, actor_id: int, calls: int, start_at: float) -> tuple[list[float], list[str]]:
    """The latency of each call in milliseconds, and the outcome each call had."""
    with ReviewPackClient(Settings.from_env(env)) as client:
        # The first calls open the connection and prepare the statements; a running host did that long ago.
        for _ in range(WARM_UP_CALLS):
            client.request_pack(tenant_id=tenant_id, actor_id=actor_id)
        time.sleep(max(0.0, start_at - time.time()))
        latencies, outcomes = [], []
        for _ in range(calls):
            started = time.perf_counter()
            result = client.request_pack(tenant_id=tenant_id, actor_id=actor_id)
            latencies.append((time.perf_counter() - started) * 1000)
            outcomes.append(str(result.outcome))
    return latencies, outcomes
