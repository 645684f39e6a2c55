"""A mixed-supervision detector for iadbench: PaDiM's map and a segmentation head
trained on a few labelled defects."""
