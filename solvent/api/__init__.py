"""The FastAPI app factory, native and compatible routes, auth, error rendering and events (the service issue).

Not built yet: this package marks its place in the layout of DESIGN.md.
"""
