"""Training engine of the deep methods (PyTorch): device, cached image arrays, augmentation, the loop, calibration.

Importing :mod:`brainmri.training` does not import torch; its modules do.
"""
