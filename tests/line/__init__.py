"""Tests of the line loop: watch, feedback, update, hot reload, metrics, container."""
