"""Batch runs and evaluation: resumable JSONL runs, judges, AlpacaEval 2, MT-Bench, quick eval."""
