"""Readers for a user's own files: NumPy arrays, a folder of images per class, a table of features.

Each is a registered dataset (`data.name: arrays | image_folder | table`). They read from disk
only, refuse bad input with one PotstillError that names the file and the fix, and never change
the data silently: every conversion they make is stated in the dataset's notes (kept in run.json).
"""

from potstill.data.readers import image_folder, numpy_files, table  # noqa: F401  (registers the readers)
