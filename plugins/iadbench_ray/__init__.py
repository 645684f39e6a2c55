"""Grids on a Ray cluster: ``adbench run --executor ray [--address HOST:PORT]``."""
