"""Prometheus metrics (/metrics) and the installation's capacity (/api/capacity/)."""
