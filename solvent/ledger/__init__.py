"""Price catalog, worker rates, per-job and idle cost, reports, runway, budgets, FOCUS (the compute-ledger issue).

Not built yet: this package marks its place in the layout of DESIGN.md.
"""
