"""brainmri: brain MRI classification with every family of method, compared honestly."""

__version__ = "0.1.0"
