"""anomalib's image models as iadbench detectors (``anomalib.<model>``), offline.

The harness feeds them its images and scores their raw outputs with its own metrics;
anomalib's normalisation, thresholds and metrics are never used. See ``catalog`` for
the model table and why some models cannot run here, ``adapter`` for how one runs.

Process environment: anomalib's PatchCore on CPU fragments glibc's heap; the cell
process should start with ``MALLOC_MMAP_THRESHOLD_=65536`` (see CELL_ENVIRONMENT).
"""

#: Environment a cell process running these detectors should start with (glibc reads
#: it at process start, so it cannot be set from inside the cell).
CELL_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "65536"}
