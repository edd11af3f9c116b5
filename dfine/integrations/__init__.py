"""Optional glue to other libraries (FiftyOne, supervision, trackers), each imported lazily inside functions
with a one-line `pip install "dfine[EXTRA]"` hint when missing; `import dfine` imports none of them."""
