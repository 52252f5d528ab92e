"""Organisations, users, passwords, sessions, API keys and roles (the accounts issue).

Not built yet: this package marks its place in the layout of DESIGN.md.
"""
