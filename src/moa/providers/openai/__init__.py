"""Every OpenAI-compatible endpoint, through one adapter on the official `openai` SDK:
`provider` (the adapter), `params` (a request as the SDK's keyword arguments), `errors` (the
SDK's exceptions as moa's typed `ProviderError`s, with status codes and Retry-After).
May import the protocol (`moa.providers.base`), the policies and the vocabulary.
"""
