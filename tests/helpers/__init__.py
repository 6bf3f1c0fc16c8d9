"""Helpers the tests import as `tests.helpers.<name>` (the repository root is on pytest's pythonpath)."""
