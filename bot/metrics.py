"""Prometheus metrics served at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

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
MODEL_PROCESS_UP = Gauge(
    "hxd_model_process_up",
    "1 while the local model's process serves, 0 while it starts, restarts or has failed",
)
MODEL_PROCESS_RESTARTS = Counter(
    "hxd_model_process_restarts_total",
    "Restarts of the local model's process after a crash or a hang",
)
MODEL_PROCESS_CRASHES = Counter(
    "hxd_model_process_crashes_total",
    "Crashes of the local model's process, by cause (a signal name, exit, hang, start-timeout)",
    ["cause"],
)
