"""Prometheus metrics and the one-line-per-job event log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

job_log = logging.getLogger("imagine_bot.jobs")

_LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300)


@dataclass(slots=True)
class JobEvent:
    """Everything one job's log line says; durations in seconds."""

    job_id: str
    platform: str
    chat: str
    user: str
    model: str
    size: str
    kind: str
    outcome: str = "ok"
    credits: int = 0
    usd: float = 0.0
    durations: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """``key=value`` text for the text log format."""
        times = " ".join(f"{k}={v:.3f}s" for k, v in self.durations.items())
        return (f"job {self.job_id} {self.outcome} platform={self.platform} chat={self.chat} "
                f"user={self.user} model={self.model} size={self.size} kind={self.kind} "
                f"credits={self.credits} {times}").rstrip()


class Metrics:
    """The bot's counters, gauges and histograms in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Counter("imagine_jobs_total", "Jobs by outcome", ["outcome", "model", "platform"],
                            registry=r)
        self.queue_depth = Gauge("imagine_queue_depth", "Jobs waiting for a slot", registry=r)
        self.in_flight = Gauge("imagine_jobs_in_flight", "Jobs calling the upstream", registry=r)
        self.upstream_seconds = Histogram("imagine_upstream_seconds", "Upstream latency", ["model"],
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.retries = Counter("imagine_upstream_retries_total", "Upstream retries", ["provider"],
                               registry=r)
        self.credits = Counter("imagine_credits_spent_total", "Credits settled", registry=r)
        self.usd = Counter("imagine_usd_spent_total", "USD settled", registry=r)
        self.delivery_failures = Counter("imagine_delivery_failures_total",
                                         "Results that could not be delivered", ["platform"],
                                         registry=r)
        self.handoffs = Counter("imagine_handoffs_total", "Waiting jobs of stopped processes:"
                                " taken over, or given up (too old, unreadable)",
                                ["platform", "outcome"], registry=r)

    def watch_queue(self, depth: Callable[[], float], running: Callable[[], float]) -> None:
        """Read queue depth and in-flight count from the scheduler at scrape time."""
        self.queue_depth.set_function(depth)
        self.in_flight.set_function(running)

    def job(self, event: JobEvent) -> None:
        """Count a finished job and write its log line."""
        self.jobs.labels(event.outcome, event.model, event.platform).inc()
        if "upstream" in event.durations:
            self.upstream_seconds.labels(event.model).observe(event.durations["upstream"])
        job_log.info(event.line(), extra={"job": {
            "id": event.job_id, "platform": event.platform, "chat": event.chat, "user": event.user,
            "model": event.model, "size": event.size, "kind": event.kind, "outcome": event.outcome,
            "credits": event.credits, "durations": event.durations}})

    def settled(self, credits: int, usd: float) -> None:
        """Count delivered spending."""
        self.credits.inc(credits)
        self.usd.inc(usd)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
