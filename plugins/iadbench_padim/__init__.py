"""PaDiM (Defard et al. 2021) for iadbench."""
