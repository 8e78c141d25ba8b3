"""Hyperparameter search: Optuna studies over the registry's methods, with brainmri's ant colony sampler."""
