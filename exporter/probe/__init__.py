"""The probe: one careful first contact with an account, checking what the exporter assumes.

`--probe` reads a little of everything the exporter would read (the project, the instance
listings, one task list of each kind) and checks, one by one, the assumptions the readers
make of the answers: their shape, the paging dialect, the time window, the statuses. What it
saw is a report (`report`, text or JSON); the answers themselves, with every identifier,
name, address and free text replaced by stable pseudonyms (`record`), are evidence a user
can attach to a bug report, and the tests replay such recordings through the readers.

The checks are pure functions of the recorded answers (`checks`); only `run` sends requests,
all of them GETs through the same paced `CloudClient` as the exporter's polls.

May import: the leaves, `exporter.core`, `exporter.cloud`, `exporter.polling.dialects` (the
very reader the polls use) and `exporter.polling.targets` (the project lookup and the
discovery as the exporter does them). Nothing of `exporter.web`, `exporter.exposition`, the
poller or the state store: a probe keeps no file but its recording and serves nothing. Only
`exporter.cli` imports it, when `--probe` is asked for.
"""
