"""The worker loop: in-process, remote over HTTP, Ray actor; the only package joining engine to the rest.

Not built yet: this package marks its place in the layout of DESIGN.md.
"""
