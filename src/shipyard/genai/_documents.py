"""Reading documents: text, Markdown, HTML and PDF to text with sections.

Every reader returns a :class:`~shipyard.genai.Document` whose text is what
gets chunked and cited. Nothing in a document is ever executed or rendered:
HTML is parsed (scripts, styles, embedded objects and hidden elements are
dropped, attributes are never read as text), Markdown is kept as its source
text, and a PDF's text is extracted page by page (its JavaScript and forms are
ignored).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from shipyard.errors import DocumentError
from shipyard.genai._records import Document, Section

#: File suffix → document kind.
KINDS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
         ".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf"}
#: Documents larger than this are refused unless the caller raises the limit.
MAX_DOCUMENT_BYTES = 25 * 1024 * 1024

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def read_document(path: str | os.PathLike, *, max_bytes: int = MAX_DOCUMENT_BYTES,
                  source: str | None = None) -> Document:
    """Read one file into a :class:`Document`.

    Parameters
    ----------
    path
        A ``.txt``, ``.md``, ``.html`` or ``.pdf`` file (see :data:`KINDS`).
    max_bytes
        Larger files are refused before they are read.
    source
        The document's source (its identity); default the resolved path.

    Raises
    ------
    DocumentError
        Unknown kind, unreadable, too large, binary, encrypted or without text.
    """
    file = Path(path)
    kind = KINDS.get(file.suffix.lower())
    if kind is None:
        raise DocumentError(f"{str(file)!r} is not a document kind Shipyard reads",
                            hint=f"use one of {', '.join(sorted(KINDS))}")
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise DocumentError(
                f"{str(file)!r} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} "
                "MiB limit for one document; it was not read",
                hint="split it, or raise max_document_bytes if it really is one document")
        data = file.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read {str(file)!r}: {exc.strerror or exc}") from exc
    return parse_document(data, kind, source=source or file.resolve().as_posix(),
                          max_bytes=max_bytes, fallback_title=file.stem)


def parse_document(data: bytes, kind: str, *, source: str, max_bytes: int = MAX_DOCUMENT_BYTES,
                   fallback_title: str | None = None) -> Document:
    """Parse raw bytes of a document of ``kind`` (``text``, ``markdown``,
    ``html``, ``pdf``).

    >>> doc = parse_document(b"# Intro\\nHi.\\n# Usage\\nRun it.", "markdown", source="r.md")
    >>> [(s.title, doc.text[s.start:s.end].strip()) for s in doc.sections]
    [('Intro', '# Intro\\nHi.'), ('Usage', '# Usage\\nRun it.')]
    """
    if len(data) > max_bytes:
        raise DocumentError(f"{source!r} is {len(data) / 2**20:.1f} MiB, over the "
                            f"{max_bytes / 2**20:.0f} MiB limit for one document",
                            hint="split it, or raise max_document_bytes")
    readers = {"text": _read_text, "markdown": _read_markdown, "html": _read_html,
               "pdf": _read_pdf}
    if kind not in readers:
        raise DocumentError(f"unknown document kind {kind!r} for {source!r}",
                            hint=f"use one of {', '.join(readers)}")
    text, title, sections, notes = readers[kind](data, source)
    if not text.strip():
        raise DocumentError(f"{source!r} holds no text", hint="nothing to index in it")
    sections = tuple(s for s in sections if text[s.start:s.end].strip())
    title = _clean_title(title) or _first_line(text) or fallback_title or source
    return Document(source=source, text=text, title=title, kind=kind, sections=sections,
                    content_hash=_sha256(data), size_bytes=len(data), notes=tuple(notes))


def iter_document_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files of a known kind under ``paths`` (files as given, folders walked
    in sorted order; hidden files skipped)."""
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                rel = file.relative_to(path).parts
                if file.is_file() and file.suffix.lower() in KINDS \
                        and not any(p.startswith(".") for p in rel):
                    yield file
        else:
            yield path


# ----------------------------------------------------------------- helpers
def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _first_line(text: str) -> str:
    return next((line.strip()[:200] for line in text.splitlines() if line.strip()), "")


def _clean_title(title: str | None) -> str:
    if not title:
        return ""
    return re.sub(r"\s+", " ", title).strip()[:200]


def decode_text(data: bytes, source: str) -> str:
    """Decode text bytes: UTF-8 (with or without BOM), else Windows-1252, else
    Latin-1. Refuse bytes that look binary (NUL bytes, many control characters).

    >>> decode_text("café".encode("cp1252"), "x")
    'café'
    """
    head = data[:65536]
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError(f"{source!r} looks binary (it holds NUL bytes), not text",
                            hint="give the file its real suffix, or leave it out")
    for encoding in ("utf-8-sig", "utf-16", "cp1252", "latin-1"):
        if encoding == "utf-16" and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    sample = text[:65536]
    if sample and len(_CONTROL.findall(sample)) > 0.05 * len(sample):
        raise DocumentError(f"{source!r} looks binary (many control characters), not text",
                            hint="give the file its real suffix, or leave it out")
    return _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))


def _read_text(data: bytes, source: str):
    text = decode_text(data, source)
    return text, _first_line(text), [Section(0, len(text))], []


# ---------------------------------------------------------------- markdown
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)|[*_`]+")


def _md_heading_text(text: str) -> str:
    return _clean_title(_INLINE.sub(lambda m: m.group(1) or "", text))


def _read_markdown(data: bytes, source: str):
    text = decode_text(data, source)
    starts: list[tuple[int, str]] = []  # (offset of heading line, heading text)
    title = None
    fence = None
    offset = 0
    prev: tuple[int, str] | None = None  # (offset, line) of a paragraph line
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        match = _FENCE.match(stripped)
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
        elif match:
            fence = match.group(1)
            prev = None
        elif (atx := _ATX.match(stripped)) is not None:
            heading = _md_heading_text(atx.group(2) or "")
            starts.append((offset, heading))
            if title is None and len(atx.group(1)) == 1 and heading:
                title = heading
            prev = None
        elif _SETEXT.match(stripped) and prev is not None:
            heading = _md_heading_text(prev[1])
            starts.append((prev[0], heading))
            if title is None and stripped.strip().startswith("=") and heading:
                title = heading
            prev = None
        elif stripped.strip():
            prev = (offset, stripped) if prev is None else prev
        else:
            prev = None
        offset += len(line)
    sections = _sections_from_starts(starts, len(text))
    if title is None and starts:
        title = starts[0][1]
    return text, title, sections, []


def _sections_from_starts(starts: list[tuple[int, str]], length: int) -> list[Section]:
    sections: list[Section] = []
    first = starts[0][0] if starts else length
    if first > 0:
        sections.append(Section(0, first, None))
    for i, (start, heading) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else length
        if end > start:
            sections.append(Section(start, end, heading or None))
    return sections


# -------------------------------------------------------------------- html
#: Elements whose content is never text: code, styling, embedded objects, forms.
_DROPPED = ("script", "style", "noscript", "template", "iframe", "frame", "frameset", "object",
            "embed", "applet", "svg", "math", "canvas", "audio", "video", "input", "select",
            "textarea", "button", "head")
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])|"
    r"opacity\s*:\s*0(?![.\d]*[1-9])", re.I)
_SECTION_TAGS = {"h1", "h2", "h3"}
_PARAGRAPH_TAGS = {"p", "div", "section", "article", "header", "footer", "nav", "aside", "main",
                   "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol",
                   "dl", "figure", "figcaption", "address", "hr", "details", "summary", "form",
                   "fieldset", "body"}
_LINE_TAGS = {"li", "tr", "dt", "dd", "br", "caption", "legend"}
_CELL_TAGS = {"td", "th"}


class _TextBuilder:
    """Appends text as a browser lays it out (collapsed whitespace, one blank
    line between blocks), so section offsets are final as they are taken."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.space = False  # a collapsed space waits to be written before more text
        self.breaks = 2  # newlines at the end (2 at the start: nothing to separate)

    def _put(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def text(self, text: str, *, pre: bool = False) -> None:
        if pre:
            if text:
                self._put(text)
                body = text.rstrip("\n")
                trailing = len(text) - len(body)
                self.breaks = self.breaks + trailing if not body else trailing
                self.space = False
            return
        if not text:
            return
        lead, trail = text[0].isspace(), text[-1].isspace()
        words = text.split()
        if not words:
            self.space = self.space or (lead and self.breaks == 0)
            return
        if (self.space or lead) and self.breaks == 0:
            self._put(" ")
        self._put(" ".join(words))
        self.breaks = 0
        self.space = trail

    def newline(self, count: int = 1) -> None:
        self.space = False
        if self.breaks < count:
            self._put("\n" * (count - self.breaks))
            self.breaks = count

    def value(self) -> str:
        return "".join(self.parts)


def _is_hidden(node) -> bool:
    attrs = node.attributes
    if "hidden" in attrs:
        return True
    if (attrs.get("aria-hidden") or "").strip().lower() == "true":
        return True
    return bool(_HIDDEN_STYLE.search(attrs.get("style") or ""))


def _read_html(data: bytes, source: str):
    from selectolax.lexbor import LexborHTMLParser

    if b"\x00" in data[:65536]:
        raise DocumentError(f"{source!r} looks binary (it holds NUL bytes), not HTML")
    tree = LexborHTMLParser(decode_text(data, source))
    title_node = tree.css_first("head > title") or tree.css_first("title")
    title = title_node.text(deep=True) if title_node is not None else None
    notes: list[str] = []
    dropped = hidden = 0
    for node in tree.css(", ".join(_DROPPED)):
        node.decompose()
        dropped += 1
    for node in tree.css("[hidden], [aria-hidden], [style]"):
        if _is_hidden(node):
            node.decompose()
            hidden += 1
    if dropped:
        notes.append(f"dropped {dropped} script, style, embedded or form elements")
    if hidden:
        notes.append(f"dropped {hidden} hidden elements")

    out = _TextBuilder()
    starts: list[tuple[int, str]] = []
    first_h1 = None
    root = tree.body or tree.root
    pre_depth = 0
    # An explicit stack, not recursion: hostile pages nest thousands of levels deep.
    stack: list[tuple[object, bool]] = [(root, False)] if root is not None else []
    while stack:
        node, leaving = stack.pop()
        tag = node.tag
        if leaving:
            if tag == "pre":
                pre_depth -= 1
            if tag in _PARAGRAPH_TAGS:
                out.newline(2)
            elif tag in _LINE_TAGS:
                out.newline(1)
            elif tag in _CELL_TAGS:
                out.text(" ")
            continue
        if tag == "-text":
            out.text(node.text_content or "", pre=pre_depth > 0)
            continue
        if tag.startswith(("-", "!")):  # comments, doctype
            continue
        if tag in _SECTION_TAGS:
            out.newline(2)
            heading = _clean_title(node.text(deep=True))
            starts.append((out.length, heading))
            if first_h1 is None and tag == "h1" and heading:
                first_h1 = heading
        elif tag in _PARAGRAPH_TAGS:
            out.newline(2)
        elif tag in _LINE_TAGS:
            out.newline(1)
        if tag == "pre":
            pre_depth += 1
        stack.append((node, True))
        children = list(node.iter(include_text=True))
        stack.extend((child, False) for child in reversed(children))
    text = out.value().rstrip() + "\n"
    starts = [(min(s, len(text)), h) for s, h in starts]
    return text, _clean_title(title) or first_h1, _sections_from_starts(starts, len(text)), notes


# --------------------------------------------------------------------- pdf
def _read_pdf(data: bytes, source: str):
    import logging

    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    if b"%PDF-" not in data[:1024]:
        raise DocumentError(f"{source!r} is not a PDF (no %PDF header)",
                            hint="check the file; only real PDFs are read as .pdf")
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed-but-readable PDFs warn a lot
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception as exc:  # pypdf raises several kinds here
                raise DocumentError(f"{source!r} is an encrypted PDF and could not be opened: "
                                    f"{exc}", hint="decrypt it first (qpdf --decrypt)") from exc
            if not opened:
                raise DocumentError(f"{source!r} is an encrypted PDF that needs a password",
                                    hint="decrypt it first (qpdf --decrypt IN OUT)")
        meta_title = None
        try:
            meta_title = reader.metadata.title if reader.metadata else None
        except Exception:  # noqa: BLE001 - broken metadata never stops the text
            meta_title = None
        parts: list[str] = []
        sections: list[Section] = []
        empty = 0
        offset = 0
        for number, page in enumerate(reader.pages, start=1):
            page_text = (page.extract_text() or "").replace("\r\n", "\n").replace("\x00", "")
            page_text = _CONTROL.sub(" ", page_text).strip()
            if not page_text:
                empty += 1
                continue
            if parts:
                parts.append("\n\n")
                offset += 2
            sections.append(Section(offset, offset + len(page_text), None, number))
            parts.append(page_text)
            offset += len(page_text)
    except DocumentError:
        raise
    except FileNotDecryptedError as exc:
        raise DocumentError(f"{source!r} is an encrypted PDF that needs a password",
                            hint="decrypt it first (qpdf --decrypt IN OUT)") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, OSError) as exc:
        raise DocumentError(f"{source!r} is not a readable PDF: {exc}",
                            hint="check the file; repair it or leave it out") from exc
    text = "".join(parts)
    if not text.strip():
        raise DocumentError(f"{source!r} has no extractable text (a scanned PDF?)",
                            hint="run OCR on it first")
    notes = [f"{empty} pages without text"] if empty else []
    title = meta_title if isinstance(meta_title, str) else None
    return text, title, sections, notes


__all__ = ["KINDS", "MAX_DOCUMENT_BYTES", "decode_text", "iter_document_files",
           "parse_document", "read_document"]
