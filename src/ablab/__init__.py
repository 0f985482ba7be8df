"""ablab: controlled deep-learning comparisons, from one TOML study to a report."""

from ablab import data as _data  # noqa: F401  (fills the dataset registry)
from ablab import models as _models  # noqa: F401  (fills model and activation registries)
from ablab import train as _train  # noqa: F401  (fills loss, optimizer, schedule registries)

__version__ = "0.1.0"
