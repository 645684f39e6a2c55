"""Simple baselines that need no pretrained weights: the floor a method must beat."""
