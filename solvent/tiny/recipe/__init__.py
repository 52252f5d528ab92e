"""How `solvent-tiny` is made and judged: its architecture, the procedural scenes it learns, the training
recipe, the scene checker and the evaluation. Research code: nothing a running Solvent imports."""
