"""What a scrape shows: the task families, the snapshot, the pre-rendered lines.

The families declared once (`families`), the model of what the poller knows and the lines it
renders to when it changes (`snapshot`), the store a scrape concatenates (`store`), and the
same families through prometheus_client (`reference`), which tests compare against.

May import: the leaves and `exporter.core`. No I/O: nothing of `exporter.cloud`,
`exporter.polling` or `exporter.web`.
"""
