"""A tiny OpenAI-compatible server on loopback for the tests: a real HTTP
server (``/v1/embeddings``, ``/v1/chat/completions``), not a mock object."""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def hashed_vector(text: str, dim: int) -> list[float]:
    """Bag of words hashed into ``dim`` buckets, unit length: similar texts
    get similar vectors, deterministically."""
    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = int(hashlib.md5(word.encode()).hexdigest(), 16)
        vec[h % dim] += 1.0 if (h >> 64) % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def first_passage_answer(messages: list[dict]) -> str:
    """Answer with the first sentence of passage [1], citing it."""
    user = messages[-1]["content"]
    match = re.search(r"\[1\][^\n]*\n<<<\n(.*?)\n>>>", user, re.S)
    if match is None:
        return "I do not know."
    sentence = re.split(r"(?<=[.!?])\s", match.group(1).strip())[0]
    return f"{sentence} [1]"


class FakeOpenAI:
    """Serve on ``127.0.0.1:<free port>``; ``url`` is the ``base_url``.

    Attributes
    ----------
    dim
        Dimension of the embeddings returned (change it to simulate a model
        swapped behind the endpoint).
    reply
        ``messages → answer text`` of the chat endpoint.
    requests
        ``(path, JSON body)`` of every request received.
    usage
        ``messages → {"prompt_tokens", "completion_tokens"}`` reported by the
        chat endpoint (default zeros); ``None`` omits ``usage``.
    status
        HTTP status of the chat endpoint (an error body when not 200).
    """

    def __init__(self, dim: int = 32,
                 reply: Callable[[list[dict]], str] = first_passage_answer,
                 usage: Callable[[list[dict]], dict] | None | str = "zeros"):
        self.dim = dim
        self.reply = reply
        self.usage = usage
        self.status = 200
        self.requests: list[tuple[str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((self.path, body))
                if self.path.endswith("/embeddings"):
                    texts = body["input"]
                    texts = [texts] if isinstance(texts, str) else texts
                    out = {"object": "list", "model": body.get("model"),
                           "data": [{"object": "embedding", "index": i,
                                     "embedding": hashed_vector(t, fake.dim)}
                                    for i, t in enumerate(texts)],
                           "usage": {"prompt_tokens": 0, "total_tokens": 0}}
                elif self.path.endswith("/chat/completions") and fake.status != 200:
                    data = json.dumps({"error": {"message": "the fake model is down",
                                                 "type": "server_error"}}).encode()
                    self.send_response(fake.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                elif self.path.endswith("/chat/completions"):
                    out = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                           "model": body.get("model"),
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant",
                                                    "content": fake.reply(body["messages"])}}],
                           "usage": {"prompt_tokens": 0, "completion_tokens": 0,
                                     "total_tokens": 0}}
                    if fake.usage is None:
                        del out["usage"]
                    elif callable(fake.usage):
                        counts = fake.usage(body["messages"])
                        out["usage"] = {**counts, "total_tokens": sum(counts.values())}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def chat_calls(self) -> int:
        """Requests the chat endpoint received."""
        return sum(1 for path, _ in self.requests if path.endswith("/chat/completions"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
