"""The exporter's account of itself: its logs and its own metrics.

Logging set-up with secrets scrubbed from every line and the task event log (`logs`), and
the exporter's own instruments (`selfmetrics`: requests, throttling, skipped polls, build),
kept apart from the task metrics. A leaf: it imports nothing else of the exporter but its
version.
"""
