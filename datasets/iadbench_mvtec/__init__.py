"""iadbench_mvtec plugin for iadbench."""
