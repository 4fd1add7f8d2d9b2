"""redisquota: quotas in Redis, shared by every mixer replica that uses the same Redis.

Params (camelCase or snake_case keys; unknown keys are errors)::

    quotas:                         # as memquota's, with Istio's redisquota rules:
      - name: requestcountquota.instance.istio-system
        maxAmount: 500              # > 0
        validDuration: 1s           # required, > 0
        rateLimitAlgorithm: FIXED_WINDOW   # default; or ROLLING_WINDOW, TOKEN_BUCKET
        bucketDuration: 100ms       # ROLLING_WINDOW only; default validDuration / 10, >= 1ms
        alignToEpoch: false         # FIXED_WINDOW only: windows at multiples since the epoch
        burst: 50                   # TOKEN_BUCKET only; default maxAmount
        overrides:
          - dimensions: {destination: reviews}
            maxAmount: 1
            validDuration: 5s       # optional (an extension; Istio's overrides had none)
            burst: 1                # TOKEN_BUCKET only; default the override's maxAmount
    redisServerUrl: localhost:6379  # see below; default localhost:6379
    connectionPoolSize: 10          # redis-py paths: batches in flight (connections, per
                                    # node for a cluster); 0 = default 10
    timeout: 50ms                   # Redis is down when it answers nothing for this long
                                    # while requests wait, or a connection takes longer;
                                    # default 50ms (see "Timeouts")
    requestTimeout: 0s              # the most one quota call waits in all, Redis answering
                                    # or not; 0 (default): no bound of its own (mixer's
                                    # --handler-timeout bounds the call); else >= timeout
    failOpen: false                 # on Redis failure: false = UNAVAILABLE, true = grant
    minDeduplicationDuration: 1s    # dedup ids kept in Redis for 2 x this
    batchWindow: 1ms                # redis-py paths (see "Connections"); 0..100ms
    batchMaxItems: 64               # redis-py paths: quota requests per batch (a check's
                                    # requests are never split)

``redisServerUrl`` forms:

* ``host:port`` (Istio's form), ``redis://[user:pass@]host:port/db``, ``rediss://…`` (TLS),
  ``unix:///path/redis.sock`` — one server;
* a Redis Cluster: ``redis+cluster://[user:pass@]h1:p1,h2:p2`` (``rediss+cluster://`` for TLS),
  a plain ``h1:p1,h2:p2`` list, or a YAML list of ``host:port`` (or ``redis://``/``rediss://``)
  seeds. The rest of the cluster is discovered from the seeds.

Algorithms run as Lua inside Redis (``*.lua`` in this package, joined into one script, loaded
once and called with EVALSHA; NOSCRIPT after a Redis restart reloads it). Time is the Redis
server's (``TIME``), not the replica's, so replicas sharing a bucket share its clock
(docs/decisions/0004):

* ``FIXED_WINDOW``: a window opens at the first grant after the previous one closed and lasts
  ``validDuration``; at most ``maxAmount`` is granted in it (up to 2 x across a window edge).
* ``ROLLING_WINDOW``: ``ceil(validDuration / bucketDuration)`` buckets; a grant counts until its
  bucket leaves the window.
* ``TOKEN_BUCKET``: capacity ``burst`` (default ``maxAmount``), starts full, refills continuously
  at ``maxAmount`` per ``validDuration``. ``reset_after`` is the time until full.

Keys: ``mixer:{<bucket key>}:<fw|rw|rwi|tb>`` and
``mixer:{<bucket key>}:dd:<amount>:<best effort 0|1>:<dedup id>`` where
the bucket key is Istio's ``<quota name>;<dim>=<value>;…`` (dimension names sorted; ``{``, ``}``
and ``%`` percent-encoded). The braces make all keys of one bucket share a cluster slot, while
different buckets (e.g. per client IP) spread over the cluster.

Results: best effort grants what is left, otherwise all or nothing; a denial is ``granted`` 0
with ``RESOURCE_EXHAUSTED`` ``"redisquota: Resource exhausted"``; a grant carries the configured
``validDuration``; ``limit``/``remaining``/``reset_after`` describe the bucket. Amounts <= 0
grant nothing (OK) and only report the bucket. A request with a ``dedup_id`` already seen (on
any replica) within the dedup TTL for the same charge (the same bucket, amount and best-effort
flag) replays the first answer without charging; on another bucket or amount it is a new charge.

Round trips: all quota requests of one check (`RedisQuotaHandler.quota_many`; ``quota`` is
``quota_many`` of one) go to Redis as one EVALSHA per cluster slot, one in all for a single
server; a cluster's slots are pipelined per node, nodes in parallel. Replies are parsed by
hiredis (`redis[hiredis]`), never by redis-py's Python fallback.

Connections: a plain ``host:port``, ``redis://`` or ``unix://`` server is reached over one
pipelined connection of our own (`adapters.redisquota.resp`, docs/decisions/0003), on which each
check is written at once and concurrent checks share the connection. TLS (``rediss://``), URLs
with redis-py's other options and clusters go through redis-py, where concurrent checks are
merged into batches: with nothing in flight a check is sent at once; otherwise checks queue for
up to ``batchWindow`` (or until ``batchMaxItems`` requests are queued, or a batch returns) and
leave together, with at most ``connectionPoolSize`` batches in flight. With a single server, a
call that meets a connection error is retried once on a fresh connection (stale after a Redis
restart); a script that had run before the connection broke is then replayed for requests with a
dedup id, not charged twice. Cluster calls are not retried.

Timeouts tell a dead Redis from a busy one. ``timeout`` is about liveness: on the pipelined
connection, Redis is declared down when requests wait and nothing at all has arrived for
``timeout`` (a stopped or hung server), and every waiting call fails at once; a connection
attempt (connect, AUTH, SELECT) is bounded by ``timeout`` too, and a refused one fails at once.
While replies keep arriving — a burst of thousands of checks queued on the connection, or
mixer's own event loop busy for a while — no call fails for being behind in the queue: the
deadline of a call in the queue moves with the queue, since every reply resets it. So with Redis
stopped a call fails within ``timeout`` of Redis's last reply (plus the event loop's own lag;
after a loop held up for longer than ``timeout``, Redis gets a further ``timeout`` to answer),
and with Redis killed as soon as the connection is refused. Set ``timeout`` above the pauses
Redis itself may see (CPU throttling, a fork for a snapshot): a Redis silent for that long looks
hung. The whole call is bounded by mixer's
``--handler-timeout`` (a call cut off there fails the check with INTERNAL, whatever
``failOpen`` says); ``requestTimeout``, when set (at least ``timeout``, below
``--handler-timeout``), bounds it sooner and hands it to the fail policy. On redis-py's paths
(TLS, clusters) ``timeout`` is redis-py's socket timeout (per read and per connect) and
``requestTimeout`` also bounds a call's wait in the batch queue.

Failures (connection errors, stalls, timeouts, script errors) never raise: with ``failOpen`` the
request is granted, otherwise it gets ``UNAVAILABLE``; either way the counter
``mixer_quota_backend_errors_total{handler}`` counts it. The client reconnects by itself once
Redis is back.
"""

from __future__ import annotations

from adapters.base import AdapterInfo
from adapters.redisquota.handler import RedisQuotaHandler, build
from adapters.redisquota.params import RedisQuotaParams, parse_params

__all__ = ["INFO", "RedisQuotaHandler", "RedisQuotaParams", "build", "parse_params"]

INFO = AdapterInfo(
    name="redisquota",
    description="Quotas and rate limits in Redis or Redis Cluster, shared across replicas",
    templates=frozenset({"quota"}),
    parse_params=parse_params,
    build=build,
)
