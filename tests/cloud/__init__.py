"""Tests of `exporter.cloud`."""
