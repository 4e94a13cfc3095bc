"""End-to-end tests: where a process (exporter, simulator, Prometheus, browser) is the point."""
