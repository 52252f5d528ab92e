"""`solvent …` commands."""
