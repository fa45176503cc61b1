"""`moa tune`: find the mixture that beats your best model on your own data, or say that none
does (docs/evaluation/tune.md).

    from moa.evaluation.tune import Settings, tune_to
    tuned = tune_to(Settings(Path("qa.jsonl"), ("groq:llama-3.1-8b-instant", "local:smollm2")),
                    Path("tuned.toml"), report_path=Path("tuned.md"))

1. `samples`: one sampling pass, every candidate at T=0 and K seeded samples, on both splits.
2. `search`: every picking configuration scored from those samples, with no call.
3. `decide`: the writing aggregators on the leading panels; then the winner and the baselines
   on the held-out split.
4. `report`: the verdict, the frontier, the recipe TOML.
"""

from moa.evaluation.tune.api import Tuned, atune_to, tune_to
from moa.evaluation.tune.found import Found, Settings
from moa.evaluation.tune.run import tune

__all__ = ["Found", "Settings", "Tuned", "atune_to", "tune", "tune_to"]
