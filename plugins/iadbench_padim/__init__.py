"""iadbench_padim plugin for iadbench."""
