"""The durable, fair, leased job queue in the database (the service issue).

Not built yet: this package marks its place in the layout of DESIGN.md.
"""
