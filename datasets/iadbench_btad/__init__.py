"""iadbench_btad plugin for iadbench."""
