"""The embedded model: GGUF files run in-process through llama-cpp-python, offline.

`provider` is the `local:` provider (where a model's weights are, one llama thread per process);
`batch` interleaves concurrent requests to one model in a llama.cpp batch, a `sequence` each;
`model` is one loaded GGUF, which all three read. llama-cpp-python is imported where first used.
May import the protocol (`moa.providers.base`) and the vocabulary.
"""
