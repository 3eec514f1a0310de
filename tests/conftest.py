"""Shared pytest setup: fixture plugins live in their own modules under tests/."""

pytest_plugins = ["tests.hub_fixtures"]
