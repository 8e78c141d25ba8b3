"""brainmri's version: recorded in results, bundles and run folders, compared when they are read again."""

__version__ = "0.1.0"
