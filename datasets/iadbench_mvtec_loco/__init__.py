"""iadbench_mvtec_loco plugin for iadbench: MVTec LOCO AD."""
