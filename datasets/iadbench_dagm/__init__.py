"""iadbench_dagm plugin for iadbench."""
