"""Batch runs and evaluation: resumable JSONL runs, judges, AlpacaEval 2, MT-Bench, quick eval.

A face, beside the server: may import the recipes, the engine and everything below them;
never the server or the CLI. `datasets/` holds the benchmark data moa ships.
"""
