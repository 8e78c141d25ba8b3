"""Robustness to a change of source: test-time adaptation and the out-of-distribution score."""
