"""ML runtime: digits data and splits, torch models, local training and evaluation, the update format."""
