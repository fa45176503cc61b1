"""`python -m moa.testing`: the fake upstream served from the command line (what
docs/scale/batch-api.md runs), its answers as long as asked and its first job expiring."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture
def served() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "moa.testing", "--words", "7", "--expire", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake upstream at http://127.0.0.1:"), line
        yield line.split()[3]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0  # Ctrl-C / SIGTERM end it cleanly


def test_every_model_answers_with_as_many_words_as_asked(served: str) -> None:
    body = {"model": "anything", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{served}/chat/completions", json=body).json()
    text = answer["choices"][0]["message"]["content"]
    assert text.startswith("answer from anything") and len(text.split()) == 7


def test_the_first_batch_job_expires_after_the_requests_asked(served: str) -> None:
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        }
        for i in range(3)
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines)
    upload = httpx.post(
        f"{served}/files",
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", content.encode())},
    ).json()
    create = {"input_file_id": upload["id"], "endpoint": "/v1/chat/completions"}
    created = httpx.post(f"{served}/batches", json=create).json()
    job = httpx.get(f"{served}/batches/{created['id']}").json()
    assert job["status"] == "expired"
    assert job["request_counts"] == {"total": 3, "completed": 1, "failed": 2}
