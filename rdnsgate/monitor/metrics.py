"""Prometheus metrics, read from the running parts at scrape time.

The hot paths keep plain counters (a dict increment in the decision log, a
bisect per DNS question in the transport); `Metrics.collect` turns them into
metric families only when ``/metrics`` is scraped.  Each service registers
what it runs: `rdnsgate serve` (all in one process) shows everything,
``serve web`` alone shows its own DNS use and the fleet states it reads.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from rdnsgate.lookups.lookup import Resolver
from rdnsgate.lookups.transport import LATENCY_BUCKETS
from rdnsgate.monitor.states import FleetState
from rdnsgate.policy.decision_log import DecisionLog


class Metrics(Collector):
    def __init__(self) -> None:
        self.resolvers: list[Resolver] = []
        self.decision_logs: list[DecisionLog] = []
        self.gateways: list[Any] = []  # frontends.smtp_proxy.Gateway (sessions, stats)
        self.policy_services: list[Any] = []  # frontends.policy_server.PolicyService (requests)
        self.monitors: list[Any] = []  # monitor.scheduler.Monitor (checks, alerts, alerter)
        self.fleet_states: dict[str, int] = {}
        self.web_counts: dict[tuple[str, str], int] = {}  # (page, outcome) -> requests

    def track(self, **parts: Any) -> Callable[[], None]:
        """Add running parts (gateways=..., resolvers=..., ...); returns the function that removes them."""
        for kind, item in parts.items():
            getattr(self, kind).append(item)

        def untrack() -> None:
            for kind, item in parts.items():
                with contextlib.suppress(ValueError):
                    getattr(self, kind).remove(item)

        return untrack

    def count_web(self, page: str, outcome: str) -> None:
        key = (page, outcome)
        self.web_counts[key] = self.web_counts.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        yield from self._decisions()
        yield from self._dns()
        yield from self._sessions()
        yield from self._fleet()
        web = CounterMetricFamily(
            "rdnsgate_web_checks", "Check page and API requests by outcome", labels=["page", "outcome"]
        )
        for (page, outcome), value in sorted(self.web_counts.items()):
            web.add_metric([page, outcome], value)
        yield web

    def _decisions(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "rdnsgate_decisions",
            "Decisions by check, its result and the action taken",
            labels=["check", "result", "action"],
        )
        totals: dict[tuple[str, str, str], int] = {}
        for item in self.decision_logs:
            for key, value in item.counts.items():
                totals[key] = totals.get(key, 0) + value
        for key, value in sorted(totals.items()):
            decisions.add_metric(list(key), value)
        yield decisions
        dropped = CounterMetricFamily("rdnsgate_decision_log_dropped", "Decisions not stored: the queue was full")
        dropped.add_metric([], sum(item.dropped for item in self.decision_logs))
        yield dropped
        written = CounterMetricFamily("rdnsgate_decision_log_written", "Decisions written to the store")
        written.add_metric([], sum(item.written for item in self.decision_logs))
        yield written
        backlog = GaugeMetricFamily("rdnsgate_decision_log_backlog", "Decisions waiting to be written to the store")
        backlog.add_metric([], sum(item.backlog for item in self.decision_logs))
        yield backlog
        if self.decision_logs:
            up = GaugeMetricFamily("rdnsgate_store_up", "1 when the last write of decisions reached the store")
            up.add_metric([], 0 if any(item.store_error for item in self.decision_logs) else 1)
            yield up

    def _dns(self) -> Iterator[Metric]:
        queries = CounterMetricFamily("rdnsgate_dns_queries", "DNS queries sent", labels=["transport"])
        queries.add_metric(["udp"], sum(r.client.stats.sent_udp for r in self.resolvers))
        queries.add_metric(["tcp"], sum(r.client.stats.sent_tcp for r in self.resolvers))
        yield queries
        timeouts = CounterMetricFamily("rdnsgate_dns_timeouts", "DNS queries that got no answer in time")
        timeouts.add_metric([], sum(r.client.stats.timeouts for r in self.resolvers))
        yield timeouts
        counts = [0] * (len(LATENCY_BUCKETS) + 1)
        total = 0.0
        for resolver in self.resolvers:
            stats = resolver.client.stats
            total += stats.latency_sum
            counts = [a + b for a, b in zip(counts, stats.latency_counts, strict=True)]
        buckets, running = [], 0
        for bound, value in zip((*map(str, LATENCY_BUCKETS), "+Inf"), counts, strict=True):
            running += value
            buckets.append((bound, running))
        latency = HistogramMetricFamily("rdnsgate_dns_question_seconds", "Time to an answer or giving up, per question")
        latency.add_metric([], buckets, total)
        yield latency
        cache = CounterMetricFamily("rdnsgate_dns_cache", "Lookups answered from the cache or not", labels=["outcome"])
        cache.add_metric(["hit"], sum(r.cache.hits for r in self.resolvers if r.cache is not None))
        cache.add_metric(["miss"], sum(r.cache.misses for r in self.resolvers if r.cache is not None))
        yield cache
        healthy = GaugeMetricFamily(
            "rdnsgate_dns_healthy", "0 while the resolver cannot be trusted (canaries, failures): no 5xx is given"
        )
        share = GaugeMetricFamily(
            "rdnsgate_dns_failure_share", "Share of timeouts and SERVFAILs in the last minute", labels=["nameserver"]
        )
        mean = GaugeMetricFamily(
            "rdnsgate_dns_nameserver_seconds", "Mean time per try in the last minute", labels=["nameserver"]
        )
        for resolver in self.resolvers:
            health = resolver.client.health
            if health is None:
                continue
            healthy.add_metric([], 0.0 if health.problem(time.monotonic()) else 1.0)
            for server, window in health.servers.items():
                share.add_metric([server], window.share_bad)
                mean.add_metric([server], window.mean_latency)
        yield from (healthy, share, mean)

    def _sessions(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("rdnsgate_smtp_sessions_active", "SMTP sessions open now")
        active.add_metric([], sum(g.sessions for g in self.gateways))
        yield active
        total = CounterMetricFamily("rdnsgate_smtp_sessions", "SMTP sessions accepted or refused", labels=["outcome"])
        total.add_metric(["accepted"], sum(g.stats["sessions"] for g in self.gateways))
        total.add_metric(["refused"], sum(g.stats["sessions_refused"] for g in self.gateways))
        yield total
        policy = CounterMetricFamily("rdnsgate_policy_requests", "Postfix policy requests answered")
        policy.add_metric([], sum(p.requests for p in self.policy_services))
        yield policy

    def _fleet(self) -> Iterator[Metric]:
        states = GaugeMetricFamily("rdnsgate_fleet_servers", "Watched sending servers by state", labels=["state"])
        for state in FleetState:
            states.add_metric([state.value], self.fleet_states.get(state.value, 0))
        yield states
        checks = CounterMetricFamily("rdnsgate_fleet_checks", "Fleet checks run by the monitor")
        checks.add_metric([], sum(m.checks for m in self.monitors))
        yield checks
        errors = CounterMetricFamily("rdnsgate_fleet_check_errors", "Fleet checks or rounds that failed (logged)")
        errors.add_metric([], sum(m.errors for m in self.monitors))
        yield errors
        alerts = CounterMetricFamily("rdnsgate_fleet_alerts", "Fleet state changes alerted", labels=["delivery"])
        alerts.add_metric(["raised"], sum(m.alerts for m in self.monitors))
        alerts.add_metric(["webhook_sent"], sum(m.alerter.sent for m in self.monitors))
        alerts.add_metric(["webhook_failed"], sum(m.alerter.failed for m in self.monitors))
        yield alerts


METRICS = Metrics()
REGISTRY = CollectorRegistry()
REGISTRY.register(METRICS)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
