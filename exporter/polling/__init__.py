"""Polling and state: when each task list is read, how, and what is kept of it.

The configured targets and the task lists they yield (`targets`; an account-wide target is a
Target per project its credentials can use: `account`), the paging dialects of the
task-list APIs (`dialects`), the scheduling arithmetic (`schedule`), the poll slots shared
fairly between endpoints (`slots`), the poller that walks a poll through read, merge, commit
and publish (`poller`; a quiet poll skips the merge), the expected durations learned from
polls and from each task list's history read once at first sight (`history`), and the
restart-safe SQLite state (`state`, with its file's schema and guards in `statefile`).

May import: the leaves, `exporter.core`, `exporter.cloud`, and `exporter.exposition` (a poll
publishes into the snapshot store). Nothing of `exporter.web`.
"""
