"""Suite-wide settings.

Hypothesis runs derandomized by default, so a CI run is reproducible and a red run can be
replayed; ``IVR_HYPOTHESIS=explore`` draws fresh random examples for a hunt (combine with
``IVR_FUZZ_EXAMPLES=5000`` for the flow fuzzers).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("IVR_HYPOTHESIS", "ci"))
