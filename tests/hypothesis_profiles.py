"""Hypothesis profiles: deterministic by default, random exploration on purpose.

``ci`` (the default) derandomizes: every clean clone, every CI run draws the same
cases, so a red run means a change broke something, not that a new case was
drawn. It keeps no example database (a clean clone has none anyway; a failure
found on purpose becomes an ``@example(...)`` next to its test, committed).

``fuzz`` is the exploration: random seeds, more examples, the local database
(``.hypothesis/``) to replay what it finds. Run it with ``make fuzz`` (or
``HYPOTHESIS_PROFILE=fuzz pytest ...``) and turn each failure into an
``@example`` regression case.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=_SLOW,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile(
    "fuzz", derandomize=False, database=DirectoryBasedExampleDatabase(".hypothesis/examples"), deadline=None,
    print_blob=True, suppress_health_check=_SLOW, max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1000")),
)


def examples(n: int) -> int:
    """``max_examples`` for a test that sets its own: ``n`` normally, twenty times as many (or
    ``$FUZZ_EXAMPLES``) under the ``fuzz`` profile, so ``make fuzz`` explores those tests too."""
    if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz":
        return int(os.environ.get("FUZZ_EXAMPLES", str(n * 20)))
    return n


def load_profile() -> str:
    """Load ``$HYPOTHESIS_PROFILE`` (default ``ci``); return its name."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile(name)
    return name


__all__ = ["examples", "load_profile"]
