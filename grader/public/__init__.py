"""Public checks and argument factories, one module per notebook (shipped to students)."""
