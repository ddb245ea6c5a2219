"""Fixtures for the codec area (see tests/conftest.py)."""
