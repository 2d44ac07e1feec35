"""precopy-sweep: will a QEMU pre-copy live migration converge, how long, and what downtime?

The public API: :func:`simulate` (scenarios in, summary and per-sync counters out), the
parameter table :data:`PARAMETERS`, and :class:`ParameterError` for bad input.
"""

from .api import Result, simulate
from .params import PARAMETERS, ParameterError

__all__ = ["PARAMETERS", "ParameterError", "Result", "__version__", "simulate"]
__version__ = "0.1.0"
