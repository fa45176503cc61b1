"""The `moa` command line: ask, chat, recipes (and serve, batch, eval where installed)."""
