"""The first-ten-minutes demo: a synthetic shapes dataset (:mod:`dfine.demo.shapes`) and the
pipeline that trains, evaluates, exports and predicts on it (:mod:`dfine.demo.pipeline`)."""
