"""iadbench_metrics plugin for iadbench."""
