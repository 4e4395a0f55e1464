"""Contract test suites: one per interface, inherited by every implementation's tests."""
