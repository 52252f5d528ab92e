"""The web studio, served at / and talking to the API over HTTP only (the studio issue).

Not built yet: this package marks its place in the layout of DESIGN.md.
"""
