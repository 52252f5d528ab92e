"""Routes, one topic per module."""
