"""Tests of what ships beside the package: rules, dashboards, manifests, image."""
