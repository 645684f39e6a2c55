"""iadbench_ksdd2 plugin for iadbench."""
