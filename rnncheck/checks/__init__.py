"""Checks: each takes a prepared case and returns findings."""
