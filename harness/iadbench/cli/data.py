"""``adbench data ...``: dataset inspection (the datasets issue fills this in)."""
