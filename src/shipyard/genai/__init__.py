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
* retrieval: :class:`Retriever`, :class:`BM25Index`, :func:`fuse`
  (:func:`convex_fusion`, the default, or :func:`reciprocal_rank_fusion`),
  :func:`mmr_select`, :class:`Reranker` (ABC),
  :class:`LexicalReranker`, :class:`EmbeddingReranker`, :func:`parse_where`;
* answers: :class:`Generator` (ABC), :class:`ExtractiveGenerator`,
  :class:`ChatGenerator` (ABC) with :class:`OpenAIChatGenerator` and
  :class:`LocalChatGenerator` (SmolLM2 in-process), :func:`generator_from_spec`,
  :func:`build_messages`, :class:`Answer`, :class:`Citation`;
* evaluation: :class:`Question`, :func:`evaluate_retrieval`,
  :func:`score_answer`, :func:`known_item_questions`, :func:`tune_fusion`,
  :class:`EvaluationReport`; the LLM :class:`Judge` (dry-run estimate,
  token accounting, :class:`JudgeCache`);
* prompts and promotion: :class:`PromptTemplate` versions in the model
  registry (``ws.rag.prompts``, :class:`PromptRegistry`); gated alias moves of
  collection and prompt versions (``ws.rag.promote``,
  ``ws.rag.promote_prompt``) return a :class:`RagPromotion`;
* corpora: :func:`bbc_news`;
* tracing: every ``ws.rag.query``/``answer`` is a :class:`Trace` of
  :class:`Span` s (embed, retrieve, rerank, guard, generate) stored in the
  workspace (``ws.rag.traces()``, ``ws.rag.trace(id)``) and exported as
  OpenTelemetry OTLP/JSON (``ws.rag.export_traces(path_or_url)``);
* guardrails: :class:`Guardrails` (on by default in ``ws.rag.answer``) redacts
  PII (:class:`Recognizer`, :class:`GazetteerRecognizer`, :func:`redact`) and
  screens prompt injection (:class:`InjectionScreen`) in questions and
  retrieved chunks.

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
from shipyard.genai._evaluation import (AnswerScores, EvaluationReport, Question, RagPromotion,
                                        evaluate_retrieval, known_item_questions,
                                        retrieval_scores, score_answer, split_questions,
                                        support, tune_fusion)
from shipyard.genai._filters import parse_where
from shipyard.genai._generation import (SYSTEM_PROMPT, ChatGenerator, ExtractiveGenerator,
                                        Generator, OpenAIChatGenerator, answer_sentences,
                                        build_messages, mark_support, split_sentences)
from shipyard.genai._local_llm import LocalChatGenerator, generator_from_spec, smollm2_path
from shipyard.genai._guardrails import (DEFAULT_RECOGNIZERS, MAX_QUESTION_CHARS,
                                        CardRecognizer, EmailRecognizer, GazetteerRecognizer,
                                        GuardReport, Guardrails, IbanRecognizer,
                                        InjectionScreen, PhoneRecognizer, Recognizer, Redaction,
                                        Screening, iban_valid, luhn_valid, redact)
from shipyard.genai._judge import (CRITERIA, Judge, JudgeCache, JudgeEstimate, JudgeReport,
                                   JudgeVerdict, parse_score)
from shipyard.genai._prompts import (USER_TEMPLATE, PromptRegistry, PromptTemplate,
                                     parse_prompt_ref, template_fields)
from shipyard.genai._rag import Rag
from shipyard.genai._records import (METADATA_FIELDS, Answer, Chunk, Citation, Document, Hit,
                                     Section)
from shipyard.genai._retrieval import (FUSIONS, MODES, EmbeddingReranker, LexicalReranker,
                                       Reranker, Retriever, convex_fusion, fuse, mmr_select,
                                       reciprocal_rank_fusion)
from shipyard.genai._tracing import Span, Trace, TraceExport, otlp_request
from shipyard.genai._vectorstore import VECTOR_STORES, VectorStore, open_vector_store

__all__ = [
    "FUSIONS", "convex_fusion", "fuse",
    "CRITERIA", "DEFAULT_RECOGNIZERS", "KINDS", "MAX_DOCUMENT_BYTES", "MAX_QUESTION_CHARS",
    "METADATA_FIELDS", "MODES", "SYSTEM_PROMPT", "USER_TEMPLATE", "VECTOR_STORES", "Answer",
    "AnswerScores", "BM25Index", "CardRecognizer", "ChatGenerator", "Chunk", "Citation",
    "CollectionVersion", "LocalChatGenerator", "generator_from_spec", "mark_support",
    "smollm2_path",
    "Document", "DocumentRecord", "EmailRecognizer", "Embedder", "EmbeddingCache",
    "EmbeddingReranker", "EvaluationReport", "ExtractiveGenerator", "GazetteerRecognizer",
    "Generator", "GuardReport", "Guardrails", "Hit", "IbanRecognizer", "InjectionScreen", "Judge",
    "JudgeCache", "JudgeEstimate", "JudgeReport", "JudgeVerdict", "LexicalReranker",
    "LocalEmbedder", "OpenAIChatGenerator", "OpenAIEmbedder", "PhoneRecognizer", "PromptRegistry",
    "PromptTemplate", "Question", "Rag", "RagPromotion", "Recognizer", "Redaction", "Refusal",
    "Reranker", "Retriever", "Screening", "Section", "Span", "TokenChunker", "Trace",
    "TraceExport", "VectorStore", "analyse", "answer_sentences", "as_embedder", "bbc_news",
    "bbc_news_files", "build_messages", "embed_texts", "embedder_from_spec", "evaluate_retrieval",
    "iban_valid", "iter_document_files", "known_item_questions", "luhn_valid", "minilm_path",
    "mmr_select", "open_vector_store", "otlp_request", "parse_collection_ref", "parse_document",
    "parse_prompt_ref", "parse_score", "parse_where", "read_document", "reciprocal_rank_fusion",
    "redact", "retrieval_scores", "score_answer", "split_questions", "split_sentences", "support",
    "template_fields", "tune_fusion",
]
