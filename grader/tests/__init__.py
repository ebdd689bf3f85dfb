"""Hidden tests, one module per notebook (never shipped to students)."""
