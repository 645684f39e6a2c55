"""iadbench_mvtec_ad2 plugin for iadbench: MVTec AD 2."""
