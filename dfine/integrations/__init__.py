"""Optional glue to other libraries (supervision, trackers, ...), each imported lazily inside functions."""
