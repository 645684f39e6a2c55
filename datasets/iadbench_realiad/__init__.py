"""iadbench_realiad plugin for iadbench."""
