"""PatchCore (Roth et al. 2022) for iadbench."""
