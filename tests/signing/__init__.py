"""Tests of `exporter.signing`."""
