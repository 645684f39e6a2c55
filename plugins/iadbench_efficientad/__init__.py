"""EfficientAD (Batzner et al., WACV 2024) for iadbench."""
