"""A tiny language model the real Ollama serves in tests and the demo.

No model weights can be downloaded here, so one is made: a llama-architecture GGUF (the format
Ollama loads) with random float32 weights, written with ``gguf``, llama.cpp's own writer. It
is 2 blocks of width 64 over a vocabulary of ~380 tokens: about half a megabyte, loaded in a
fraction of a second and answering at a few hundred tokens a second on one core.

Random weights would mostly emit byte and control tokens. Two biases make the answers read
as words: every token embedding carries a large constant in one column (so that direction
dominates the residual stream), and the output rows of the whole-word tokens weigh that
column heavily (so their logits win). The answer is still nonsense, made of words.

The model never emits end-of-sequence, so its Modelfile sets ``num_predict``: every answer
ends after that many tokens (``done_reason: "length"``).

Writing is deterministic: the same seed gives the same bytes, so the same model digest.

``create_models`` puts the model into an Ollama model store (an ``OLLAMA_MODELS``
directory) under the names a test or the demo declares, with the real ``ollama create``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

SEED = 22
CONTEXT_LENGTH = 2048
EMBEDDING = 64
BLOCKS = 2
FEED_FORWARD = 128
HEADS = 4
ROPE_DIMENSION = EMBEDDING // HEADS
# Tokens each answer has: the model never ends one on its own.
NUM_PREDICT = 32
NUM_CTX = 512

# The Modelfile of every name the tiny model is created under. The template renders the
# chat as plain "role: content" lines, which is all a random model needs.
MODELFILE = (
    "FROM {gguf}\n"
    'TEMPLATE """{{- range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: """\n'
    f"PARAMETER num_predict {NUM_PREDICT}\n"
    f"PARAMETER num_ctx {NUM_CTX}\n"
)

WORDS = tuple(
    " ".join(
        (
            "the a local model answers from this cluster when every cloud is down and it keeps",
            "working on its own small machine with tiny random weights that still speak in words",
            "gateway route fallback llama ollama served here today quietly well fast enough for",
            "tests demo reply hello world friend yes no maybe sure thanks please good fine ready",
        )
    ).split()
)
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SPACE = "\u2581"  # SentencePiece's word boundary
# The embedding column every token carries, and how strongly the word tokens answer to it.
BIAS_COLUMN = 0
EMBEDDING_BIAS = 4.0
OUTPUT_BIAS = 8.0


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of a SentencePiece ("llama") tokenizer."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = [SPACE, *LETTERS, *(SPACE + c for c in LETTERS), *(SPACE + w for w in WORDS)]
    pieces = list(dict.fromkeys(pieces))
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    # SentencePiece prefers higher scores: whole words before letters before bytes.
    scores = [0.0] * (3 + 256) + [float(len(p)) for p in pieces]
    return tokens, scores, [int(t) for t in types]


def write_gguf(path: Path, *, seed: int = SEED) -> Path:
    """Write the tiny model to ``path``; the same seed always writes the same bytes."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    vocab = len(tokens)

    def weights(*shape: int) -> np.ndarray:
        # numpy shape (out, in), as llama.cpp's converters write them.
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("llmroute-tiny")
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(BLOCKS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(ROPE_DIMENSION)
    writer.add_rope_freq_base(1e4)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)

    embeddings = weights(vocab, EMBEDDING)
    embeddings[:, BIAS_COLUMN] = EMBEDDING_BIAS
    output = weights(vocab, EMBEDDING)
    output[:, BIAS_COLUMN] = -OUTPUT_BIAS
    words = [i for i, t in enumerate(tokens) if t.startswith(SPACE) and len(t) > 2]
    output[words, BIAS_COLUMN] = OUTPUT_BIAS
    ones = np.ones(EMBEDDING, dtype=np.float32)

    writer.add_tensor("token_embd.weight", embeddings)
    for block in range(BLOCKS):
        prefix = f"blk.{block}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{name}.weight", weights(EMBEDDING, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", ones)
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weights(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(EMBEDDING, FEED_FORWARD))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _store_server(
    ollama: Path, store: Path, home: Path, host: str = "127.0.0.1"
) -> Iterator[dict[str, str]]:
    """A short-lived ``ollama serve`` at ``host`` over ``store``; yields the client's env."""
    address = f"{host}:{_free_port(host)}"
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),  # Ollama keeps its key pair there
        "OLLAMA_HOST": address,
        "OLLAMA_MODELS": str(store),
    }
    log = home / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(ollama), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise RuntimeError(
                    f"ollama serve exited with {server.returncode}: {log.read_text()}"
                )
            try:
                with opener.open(f"http://{address}/api/version", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ollama serve not answering: {log.read_text()}") from None
                time.sleep(0.05)
        yield env
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def create_models(store: Path, names: Iterable[str], *, ollama: Path | None = None) -> None:
    """Create the tiny model in the Ollama model store ``store`` under each of ``names``
    (e.g. ``llama3.2``, ``neural-chat:7b``), as ``ollama pull`` would have left them."""
    names = list(names)
    if not names:
        return
    if ollama is None:
        from . import tools

        ollama = tools.binary("ollama")
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llmroute-tinymodel-") as tmp:
        work = Path(tmp)
        gguf_path = write_gguf(work / "tiny.gguf")
        modelfile = work / "Modelfile"
        modelfile.write_text(MODELFILE.replace("{gguf}", str(gguf_path)))
        with _store_server(ollama, store, work) as env:
            for name in names:
                subprocess.run(
                    [str(ollama), "create", name, "-f", str(modelfile)],
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=60,
                )


@contextlib.contextmanager
def local_ollama(
    names: Iterable[str], *, ollama: Path | None = None, host: str | None = None
) -> Iterator[str]:
    """A real ``ollama serve`` at ``host`` (by default where pods can reach the host: the
    pod network's gateway, else loopback) holding the tiny model under ``names``, for a test
    that needs an Ollama outside the cluster (an ``ollama`` target with an apiBase, or an
    external Ollama); yields its URL. Stopped, and its store removed, on exit."""
    if ollama is None:
        from . import tools

        ollama = tools.binary("ollama")
    if host is None:
        from . import podnet

        host = podnet.host_address()
    with tempfile.TemporaryDirectory(prefix="llmroute-ollama-") as tmp:
        store = Path(tmp) / "models"
        create_models(store, names, ollama=ollama)
        with _store_server(ollama, store, Path(tmp), host) as env:
            yield f"http://{env['OLLAMA_HOST']}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m localcluster.tinymodel",
        description="Write the tiny GGUF, or create it in an Ollama model store.",
    )
    parser.add_argument("--gguf", type=Path, help="write the GGUF file here")
    parser.add_argument("--store", type=Path, help="an OLLAMA_MODELS directory to create in")
    parser.add_argument("names", nargs="*", help="model names to create in --store")
    args = parser.parse_args(argv)
    if args.gguf:
        write_gguf(args.gguf)
    if args.store:
        create_models(args.store, args.names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
