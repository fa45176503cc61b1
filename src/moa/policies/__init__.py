"""What guards every call: the one retry loop (`retry`), adaptive rate limits (`ratelimit`) and
the response cache (`cache`); `redis/` holds their Redis versions, shared by many processes
(`--redis`).

Policies know calls only as plain data (`moa.types`) and the error tree; they may import the
vocabulary at the package root and nothing above it. `moa.call.chain` wraps a provider in them.
"""
