"""The tiny local model: a deterministic GGUF the real Ollama loads and answers from."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import gguf

from built_tools import require_tools
from localcluster import tinymodel


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    first = tinymodel.write_gguf(tmp_path / "a.gguf")
    again = tinymodel.write_gguf(tmp_path / "b.gguf")
    other = tinymodel.write_gguf(tmp_path / "c.gguf", seed=tinymodel.SEED + 1)
    assert digest(first) == digest(again)
    assert digest(first) != digest(other)


def test_a_llama_gguf_with_a_sentencepiece_vocabulary(tmp_path: Path) -> None:
    reader = gguf.GGUFReader(tinymodel.write_gguf(tmp_path / "tiny.gguf"))
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "llama"
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight"} <= names
    assert {f"blk.{tinymodel.BLOCKS - 1}.ffn_down.weight"} <= names
    tokens, _, types = tinymodel.vocabulary()
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert len(tokens) == len(set(tokens)) == len(types)
    assert (tmp_path / "tiny.gguf").stat().st_size < 1024 * 1024


def test_ollama_answers_in_words_cut_at_num_predict() -> None:
    require_tools("ollama")
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": False,
        "options": {"temperature": 0},
    }
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with tinymodel.local_ollama(["llama3.2", "neural-chat:7b"]) as url:
        with opener.open(f"{url}/api/tags", timeout=30) as response:
            tags = json.loads(response.read())
        request = urllib.request.Request(f"{url}/api/chat", data=json.dumps(body).encode())
        with opener.open(request, timeout=60) as response:
            answer = json.loads(response.read())
    assert sorted(m["name"] for m in tags["models"]) == ["llama3.2:latest", "neural-chat:7b"]
    assert answer["done_reason"] == "length"
    assert answer["eval_count"] == tinymodel.NUM_PREDICT
    words = answer["message"]["content"].split()
    vocabulary = set(tinymodel.WORDS) | set(tinymodel.LETTERS)
    assert words and all(word in vocabulary for word in words)
