"""iadbench_visa plugin for iadbench."""
