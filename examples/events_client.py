"""Watch a MoA run event by event: `POST /v1/moa/runs` on a running `moa serve`.

    moa serve -r local &                      # or any recipe
    python examples/events_client.py "Why is the sky blue?" --model local

Standard library only. Proposals are printed as they finish (their deltas as they arrive when
`--deltas`), then the answer as it streams, then the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request


def events(url: str, body: dict, key: str | None):
    request = urllib.request.Request(
        f"{url}/v1/moa/runs",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {key}"} if key else {}),
        },
    )
    with urllib.request.urlopen(request) as response:
        for line in response:  # one `data: {json}` line per event, then a blank line
            if line.startswith(b"data: "):
                yield json.loads(line[6:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--model", default="local", help="a recipe the server serves")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--deltas", action="store_true", help="print proposals as they stream")
    args = parser.parse_args()
    body = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
    for event in events(args.url, body, os.environ.get("MOA_API_KEY")):
        kind = event["type"]
        if kind == "layer.started":
            named = ", ".join(event["labels"])  # samples of one model numbered: `m #2 · T=0.7`
            print(f"\n== layer {event['layer']}: {named}", file=sys.stderr)
        elif kind == "proposal.delta" and args.deltas:
            print(f"[{event['model']}] {event['text']}", file=sys.stderr)
        elif kind in ("proposal.finished", "proposal.failed"):
            call = event["call"]
            said = call["output"] if call["status"] == "ok" else call["error"]
            print(
                f"-- {event['model']} {call['status']} in {call['latency_s']:.2f}s: {said}",
                file=sys.stderr,
            )
        elif kind == "aggregator.started":
            print(f"\n== aggregator {event['model']}\n", file=sys.stderr)
        elif kind == "answer.delta":
            print(event["text"], end="", flush=True)
        elif kind == "done":
            usage = event["usage"]
            print(
                f"\n\n{event['trace']['latency_s']:.2f}s, {usage['total_tokens']} tokens",
                file=sys.stderr,
            )
        elif kind == "error":
            sys.exit(f"\nrun failed: {event['error']['message']}")


if __name__ == "__main__":
    main()
