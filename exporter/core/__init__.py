"""The core: pure values and rules, no I/O.

What a task list is (`tasklists`), a task record read leniently (`tasks`) and what it
changed in words (`change`), the counting rules (`counting`: window, merge, summary),
whether a poll's answer changes nothing, told without a merge (`quiet`), the bound on task
names per task list (`names`), how long each kind of task usually takes
(`expectations`: the statistics, their bounds, the fleet pools and the stuck threshold's
fallback), which replica owns what (`sharding`), what discovery found (`instances`) and
which of an account's projects an account-wide target covers (`projects`). Everything here is a
function of its arguments, tested in-process in milliseconds.

May import: the leaves (`exporter.config`, `exporter.text`). Nothing that talks to the
network, keeps a file or serves HTTP.
"""
