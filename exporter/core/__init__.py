"""The core: pure values and rules, no I/O.

What a task list is (`tasklists`), a task record read leniently (`tasks`) and what it
changed in words (`change`), the counting rules (`counting`: window, merge, summary), the
bound on task names per task list (`names`), which
replica owns what (`sharding`) and what discovery found (`instances`). Everything here is a
function of its arguments, tested in-process in milliseconds.

May import: the leaves (`exporter.config`, `exporter.text`). Nothing that talks to the
network, keeps a file or serves HTTP.
"""
