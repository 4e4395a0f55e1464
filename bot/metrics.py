"""Prometheus metrics served at /metrics."""

from prometheus_client import Counter, Histogram

MESSAGES_RECEIVED = Counter(
    "hxd_messages_received_total",
    "Messages received, by platform and whether duplicate",
    ["platform", "duplicate"],
)
MESSAGES_DECIDED = Counter(
    "hxd_messages_decided_total",
    "Messages finished, by outcome (answered, ignored, failed...)",
    ["outcome"],
)
PIPELINE_SECONDS = Histogram(
    "hxd_pipeline_seconds",
    "Time through the middleware pipeline per message",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
SEND_ATTEMPTS = Counter(
    "hxd_send_attempts_total",
    "Attempts to send replies, by platform and result",
    ["platform", "result"],
)
