"""Evaluation: judges, scoring and the benchmarks (AlpacaEval 2, MT-Bench, quick eval).

A face, beside the server: may import `moa.batch` (which runs the generations and the judges'
calls), the recipes, the engine and everything below them; never the server or the CLI.
`datasets/` holds the benchmark data moa ships.
"""
