"""iadbench: a benchmark harness for industrial visual anomaly detection."""

__version__ = "0.1.0"
