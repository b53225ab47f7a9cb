"""Settings every test runs under."""

import os

# Console commands choose their thread count from the machine's load (causal_rn.threads.share_cores), so that a busy
# machine does not slow them down; tests that compare the bits of two runs need the same count in both, whatever else
# runs beside them. The tests of that choice ask for it explicitly.
os.environ["CAUSAL_RN_THREADS"] = "fixed"
