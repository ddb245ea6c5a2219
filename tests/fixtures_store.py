"""Fixtures for the store area (see tests/conftest.py)."""
