"""One agent's call: what a model slot is (`agent`), the prompts that carry references
(`prompts`), the pure request builder (`request`), the policy chain a provider is wrapped in
(`chain`), and the `Caller` that puts them together (`caller`).

May import the vocabulary at the package root, `moa.policies` and `moa.providers`; never the
strategies or the engine that decide which calls to make.
"""
