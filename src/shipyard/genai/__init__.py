"""Retrieval-augmented generation: versioned document collections, embeddings,
vector stores, retrieval, cited answers and evaluation.

The front door is ``ws.rag`` (:class:`Rag`)::

    import shipyard
    ws = shipyard.Workspace.open()
    ws.rag.ingest("docs", ["handbook/", "faq.md", "report.pdf"])   # docs@1
    hits = ws.rag.query("docs", "How do I rotate a key?", k=5)     # hybrid
    answer = ws.rag.answer("docs", "How do I rotate a key?")       # cited
    report = ws.rag.evaluate("docs", [{"text": "...", "relevant": ["/abs/faq.md"]}])

The pieces are public for servers and other stages to compose:

* documents: :func:`read_document`, :func:`parse_document`, :class:`Document`,
  :class:`Section`, :class:`TokenChunker`, :class:`Chunk`;
* embeddings: :class:`Embedder` (ABC), :class:`LocalEmbedder` (offline
  MiniLM), :class:`OpenAIEmbedder`, :class:`EmbeddingCache`;
* vector stores: :class:`VectorStore` (ABC), :func:`open_vector_store`,
  :data:`VECTOR_STORES` (``lancedb://``, ``postgresql+pgvector://``);
* retrieval: :class:`Retriever`, :class:`BM25Index`,
  :func:`reciprocal_rank_fusion`, :func:`mmr_select`, :class:`Reranker` (ABC),
  :class:`LexicalReranker`, :class:`EmbeddingReranker`, :func:`parse_where`;
* answers: :class:`Generator` (ABC), :class:`ExtractiveGenerator`,
  :class:`OpenAIChatGenerator`, :func:`build_messages`, :class:`Answer`,
  :class:`Citation`;
* evaluation: :class:`Question`, :func:`evaluate_retrieval`,
  :func:`score_answer`, :func:`known_item_questions`, :func:`tune_fusion`,
  :class:`EvaluationReport`;
* corpora: :func:`bbc_news`.

Heavy libraries (onnxruntime, torch, lancedb, bm25s, pypdf, openai) load
when first used.
"""

from shipyard.genai._bm25 import BM25Index, analyse
from shipyard.genai._chunking import TokenChunker, minilm_path
from shipyard.genai._collections import (CollectionVersion, DocumentRecord, Refusal,
                                         parse_collection_ref)
from shipyard.genai._corpora import bbc_news, bbc_news_files
from shipyard.genai._documents import (KINDS, MAX_DOCUMENT_BYTES, iter_document_files,
                                       parse_document, read_document)
from shipyard.genai._embeddings import (Embedder, EmbeddingCache, LocalEmbedder,
                                        OpenAIEmbedder, as_embedder, embed_texts,
                                        embedder_from_spec)
from shipyard.genai._evaluation import (AnswerScores, EvaluationReport, Question,
                                        evaluate_retrieval, known_item_questions,
                                        retrieval_scores, score_answer, split_questions,
                                        support, tune_fusion)
from shipyard.genai._filters import parse_where
from shipyard.genai._generation import (SYSTEM_PROMPT, ExtractiveGenerator, Generator,
                                        OpenAIChatGenerator, answer_sentences, build_messages,
                                        split_sentences)
from shipyard.genai._rag import Rag
from shipyard.genai._records import (METADATA_FIELDS, Answer, Chunk, Citation, Document, Hit,
                                     Section)
from shipyard.genai._retrieval import (MODES, EmbeddingReranker, LexicalReranker, Reranker,
                                       Retriever, mmr_select, reciprocal_rank_fusion)
from shipyard.genai._vectorstore import VECTOR_STORES, VectorStore, open_vector_store

__all__ = [
    "KINDS", "MAX_DOCUMENT_BYTES", "METADATA_FIELDS", "MODES", "SYSTEM_PROMPT", "VECTOR_STORES",
    "Answer", "AnswerScores", "BM25Index", "Chunk", "Citation", "CollectionVersion", "Document",
    "DocumentRecord", "Embedder", "EmbeddingCache", "EmbeddingReranker", "EvaluationReport",
    "ExtractiveGenerator", "Generator", "Hit", "LexicalReranker", "LocalEmbedder",
    "OpenAIChatGenerator", "OpenAIEmbedder", "Question", "Rag", "Refusal", "Reranker",
    "Retriever", "Section", "TokenChunker", "VectorStore", "analyse", "answer_sentences", "as_embedder",
    "bbc_news", "bbc_news_files", "build_messages", "embed_texts", "embedder_from_spec",
    "evaluate_retrieval", "iter_document_files", "known_item_questions", "minilm_path",
    "mmr_select", "open_vector_store", "parse_collection_ref", "parse_document",
    "parse_where", "read_document", "reciprocal_rank_fusion", "retrieval_scores",
    "score_answer", "split_questions", "split_sentences", "support", "tune_fusion",
]
