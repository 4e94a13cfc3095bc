"""Talking to Huawei Cloud: signed GETs and what they return, knowing nothing of counting.

The signed client with pacing, retries, throttling and renewal (`client`, `ratelimit`), the
lean HTTP/1.1 transport (`transport`), reading a reply within bounds (`replies`), the
task-list polls' own path (`hotpath`: each GET prepared once per task list and sent as bytes
over `wire`, kept-alive non-blocking sockets read from the loop's readiness callbacks with
one deadline sweep, TLS on the socket itself: `sockets`), the
credentials and their providers (`credentials`, `providers`), the project lookup through IAM
(`projects`), the instance listings (`discovery`) and the one runaway guard of every paged
listing (`paging`), and the HTTP clients of one configuration (`session`). Signing itself
is the `exporter.signing` leaf, shared with the simulator.

May import: the leaves (`exporter.config`, `exporter.signing`, `exporter.telemetry`,
`exporter.aio`, `exporter.text`) and the core's values, never its counting rules.
"""
