"""ablab: controlled deep-learning comparisons, from one TOML study to a report."""

import os

# Idle OpenMP threads sleep instead of spinning: when a study's workers, a test runner or
# anything else share the cores, spinning threads slowed training ~50x here (measured:
# digits MLP, 3 epochs, 2 threads beside another busy process: 16.7 s spinning, 0.28 s
# passive). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ablab import data as _data  # noqa: F401  (fills the dataset registry)
from ablab import models as _models  # noqa: F401  (fills model and activation registries)
from ablab import train as _train  # noqa: F401  (fills loss, optimizer, schedule registries)

__version__ = "0.1.0"
