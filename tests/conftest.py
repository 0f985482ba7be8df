import os

import pytest

# Tests never reach for the network: a missing dataset must fail fast and clearly.
os.environ.setdefault("ABLAB_DOWNLOAD", "0")


def tiny_run(**over):
    """A run config (plain data) that trains in well under a second."""
    data = {
        "epochs": 3,
        "batch_size": 64,
        "seed": 0,
        "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 300, "noise": 0.2},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adam", "lr": 0.01},
    }
    for key, value in over.items():
        data[key] = value
    return data


@pytest.fixture
def run_data():
    return tiny_run()
