"""iadbench_mpdd plugin for iadbench."""
