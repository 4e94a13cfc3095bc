"""HTTP: the bounded server, the routes, `/metrics` and the landing page.

The selector server and its worker threads (`server`), HTTP/1.1 parsing and response heads
(`http`), the WSGI types (`wsgi`), the routes (`routes`), the scrape (`metrics`) with the
bodies scrapes share (`bodies`), and the landing page as a pure renderer (`landing`).
`--web.config.file`: the exporter-toolkit's web config read and checked (`webconfig`),
re-read when its files change (`webwatch`), basic auth with bcrypt and a verified cache
(`auth`), and TLS on the non-blocking sockets (`tls`).

May import: the leaves, `exporter.core` and `exporter.exposition`. It reads what the poller
published and never calls the cloud: nothing of `exporter.cloud` or `exporter.polling`.
"""
