"""anomalib's image models as iadbench detectors (``anomalib.<model>``), offline.

The harness feeds them its images and scores their raw outputs with its own metrics;
anomalib's normalisation, thresholds and metrics are never used. See ``catalog`` for
the model table and why some models cannot run here, ``adapter`` for how one runs.

Memory: anomalib's PatchCore coreset fragments glibc's heap; entries flagged
``bounded_heap`` fit inside ``iadbench.memory.bounded_heap`` (see there why only the fit).
"""
