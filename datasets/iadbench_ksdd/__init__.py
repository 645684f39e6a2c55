"""iadbench_ksdd plugin for iadbench."""
