"""iadbench_patchcore plugin for iadbench."""
