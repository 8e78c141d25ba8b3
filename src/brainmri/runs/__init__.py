"""What runs an experiment end to end: configuration, reading the data, units, summaries, benchmark, train, cluster.

The layer above the methods (:mod:`brainmri.models`) and their explanations
(:mod:`brainmri.explain`); the commands (:mod:`brainmri.cli`), tuning and
the region search call it, nothing below it does.
"""
