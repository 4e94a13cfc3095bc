"""Tests of `exporter.exposition`."""
