"""One module per row of the suite (issue #5)."""
