"""iadbench_factory plugin for iadbench."""
