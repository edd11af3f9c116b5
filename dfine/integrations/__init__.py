"""Optional glue to other libraries (FiftyOne, supervision, trackers), each imported lazily inside functions
with a one-line install hint when missing (``dfine.text.pip_install``); `import dfine` imports none of them."""
