"""Prometheus exporter for the background tasks of Huawei Cloud DCS and DMS instances."""

__version__ = "0.1.0"
