"""What a run leaves on disk: the cell record's schema, the run folder's store, and the
identity that matches records across runs. Runner writes through it and report reads
through it; neither imports the other."""
