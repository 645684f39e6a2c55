"""Calibration: from good images' out-of-fold scores to a threshold whose false-alarm
rate on the line is known, and what each budget costs in missed defects."""
