"""The engine: a mixture's stages and how one run goes through them.

`mixture` is `MoA` (compose, check, stream / arun / run, the whole-run cost estimate);
`options` is one run's options, the same at every entry point; `run` is one run, step by
step; `layer` a proposal layer and its concurrent calls (quorum, deadline); `aggregator` the
last stage; `answering` what a client asks of the answer, checked before any call;
`staircase` the aggregator reading proposals as they stream; `cluster` the outlier filter;
`budget` the money budget checked before each stage; `lifecycle` what a MoA keeps open.

May import everything below it — the strategies, one call (`moa.call`), the providers, the
policies and the vocabulary at the package root — and nothing above (recipes, faces).
"""
