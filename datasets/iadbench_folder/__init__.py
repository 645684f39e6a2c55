"""iadbench_folder plugin for iadbench."""
