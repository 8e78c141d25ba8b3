"""Attribution maps of a model bundle, and the numbers that check them (``brainmri explain``)."""
