"""Notebooks whose sources changed but whose cpu outputs are not yet committed: their re-execution did not fit in
the session that changed them (a full execution takes about two hours on two cores). They read every other
notebook's result rows, so they run last, from the same code; see the README's "Reproducibility" section.

The tests over committed outputs mark these notebooks as strict xfails: as soon as one is executed and committed,
its xfail passes unexpectedly and the suite fails until its number leaves this set, so the list cannot outlive its
reason."""
PENDING_EXECUTION: set[str] = set()

# Executed notebooks whose committed outputs have a known defect that only their next execution removes (the fix is
# in adlib/, and any change there means executing every notebook again): a strict xfail of the one test it breaks.
KNOWN_OUTPUT_DEFECTS: dict[str, str] = {}
