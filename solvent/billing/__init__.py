"""Plans, credit pricing, the credit ledger, grants, rate limits and payment webhooks (the billing issue).

Not built yet: this package marks its place in the layout of DESIGN.md.
"""
