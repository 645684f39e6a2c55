"""Example third-party plugin for iadbench (used by iadbench's own tests)."""
