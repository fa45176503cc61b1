"""`python -m moa.testing`: the fake upstream from the command line, to try moa with no
provider and no key (point a recipe's `[providers.NAME] base_url` at the URL it prints).

    python -m moa.testing --port 9100 --batch-delay 30 --expire 1

Every model answers "answer from MODEL" (`--words N` makes it N words long); its Batch API
(`/v1/files`, `/v1/batches`) runs each job for `--batch-delay` seconds, and `--expire K`
makes the first job end `expired` with only K of its requests answered. Stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import threading

from moa.testing.fake_upstream import FakeUpstream
from moa.testing.replies import Body, Reply

_FILLER = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]


def _padded(words: int) -> Reply:
    def text(body: Body) -> str:
        head = f"answer from {body.get('model')}".split()
        tail = [_FILLER[i % len(_FILLER)] for i in range(max(0, words - len(head)))]
        return " ".join(head + tail)

    return Reply(text=text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moa.testing", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--batch-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--expire", type=int, metavar="K", help="the first job expires after K")
    parser.add_argument("--words", type=int, metavar="N", help="answers N words long")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with FakeUpstream(host=args.host, port=args.port) as up:
        up.batches.delay_s = args.batch_delay
        if args.expire is not None:
            up.batches.expire(args.expire)
        if args.words:
            up.default_reply = _padded(args.words)
        print(f"fake upstream at {up.base_url} (Ctrl-C stops it)", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
