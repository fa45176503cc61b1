"""The `moa` command line: ask, chat, recipes, serve, web, batch, eval (where installed).

A face: may import every floor below it (the server and evaluation among them); nothing imports
it. Heavy dependencies load where a verb first needs them, so `moa --help` starts in a blink.
"""
