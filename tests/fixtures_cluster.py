"""Fixtures for the cluster area (see tests/conftest.py)."""
