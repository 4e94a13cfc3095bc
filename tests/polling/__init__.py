"""Tests of `exporter.polling`."""
