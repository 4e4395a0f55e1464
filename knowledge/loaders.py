"""Turn a file's bytes into text the chunker understands, or say clearly why it cannot.

Every loader returns Markdown-flavoured text (headings as ``#`` lines) for prose, so one chunker
handles Markdown, reStructuredText and HTML alike; PDF pages and source code keep their own shape.
A file that cannot be read raises ``SkipFile`` with a reason an admin can act on.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

log = logging.getLogger(__name__)

Kind = Literal["markdown", "rst", "text", "pdf", "html", "code"]

EXTENSIONS: dict[str, Kind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
}
CODE_EXTENSIONS = {
    ".py", ".pyi", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".go", ".rs", ".java", ".kt", ".scala",
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".cu", ".cuh", ".cs", ".rb", ".php", ".swift",
    ".m", ".sh", ".bash", ".lua", ".r", ".sql", ".proto", ".cmake", ".yaml", ".yml", ".toml",
    ".ini", ".cfg",
}  # fmt: skip
CODE_NAMES = {"Makefile", "Dockerfile", "CMakeLists.txt"}


class SkipFile(Exception):
    """This file is left out of the index; the message says why."""


@dataclass(frozen=True, slots=True)
class Loaded:
    kind: Kind
    text: str
    title: str = ""
    # For PDFs: (page number, text) so chunks can cite the page.
    pages: tuple[tuple[int, str], ...] = ()


def kind_of(path: PurePath) -> Kind | None:
    """The loader for this file name, or None when we do not index this type."""
    if path.name in CODE_NAMES:
        return "code"
    suffix = path.suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if suffix in CODE_EXTENSIONS:
        return "code"
    return None


def load(path: PurePath, data: bytes) -> Loaded:
    """Parse one file's bytes; raises SkipFile for broken, binary, encrypted or empty files."""
    kind = kind_of(path)
    if kind is None:
        raise SkipFile(f"unsupported file type {path.suffix or path.name!r}")
    if kind == "pdf":
        return _load_pdf(data)
    text = _decode(data)
    if kind == "html":
        loaded = _load_html(text)
    elif kind == "rst":
        loaded = Loaded("rst", rst_to_markdown(text))
    else:
        loaded = Loaded(kind, text)
    if not loaded.text.strip():
        raise SkipFile("no text in the file")
    title = "" if kind == "code" else (loaded.title or _first_heading(loaded.text))
    return Loaded(loaded.kind, loaded.text, title, loaded.pages)


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file (contains NUL bytes)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # Older Chinese documents are often GBK/GB18030.
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        raise SkipFile("not UTF-8 or GB18030 text") from None
    return text


_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _first_heading(text: str) -> str:
    match = _HEADING.search(text[:20000])
    return match.group(1).strip() if match else ""


# -- PDF ----------------------------------------------------------------------------------------


def _load_pdf(data: bytes) -> Loaded:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    # pypdf logs a warning per damaged object; the skip reason says enough.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                unlocked = bool(reader.decrypt(""))
            except Exception:
                unlocked = False
            if not unlocked:
                raise SkipFile("encrypted PDF (needs a password)")
        pages = []
        for number, page in enumerate(reader.pages, 1):
            text = (page.extract_text() or "").strip()
            if text:
                pages.append((number, text))
        title = ""
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title).strip()
    except SkipFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, IndexError) as exc:
        raise SkipFile(f"broken PDF: {exc}") from None
    except Exception as exc:  # pypdf raises many kinds on damaged files
        raise SkipFile(f"broken PDF: {type(exc).__name__}: {exc}") from None
    if not pages:
        raise SkipFile("PDF has no extractable text (scanned images?)")
    return Loaded("pdf", "\n\n".join(text for _, text in pages), title, tuple(pages))


# -- HTML ---------------------------------------------------------------------------------------


def _load_html(text: str) -> Loaded:
    import trafilatura

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    body = trafilatura.extract(
        text,
        output_format="markdown",
        include_formatting=True,
        include_tables=True,
        include_comments=False,
        favor_recall=True,
    )
    if not body or not body.strip():
        raise SkipFile("no readable text in the HTML page")
    title = ""
    metadata = trafilatura.extract_metadata(text)
    if metadata is not None and metadata.title:
        title = metadata.title.strip()
    return Loaded("html", body, title)


# -- reStructuredText ---------------------------------------------------------------------------

_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+<>:._])\1{2,}\s*$")


def rst_to_markdown(text: str) -> str:
    """Rewrite reST section titles (underlined, optionally overlined) as ``#`` headings.

    reST has no fixed levels: the first adornment style seen is level 1, the next new one
    level 2, and so on. Everything else is kept as it is.
    """
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        over = _ADORNMENT.match(line)
        # Overline + title + underline.
        if (
            over
            and i + 2 < len(lines)
            and lines[i + 1].strip()
            and _ADORNMENT.match(lines[i + 2])
            and lines[i + 2].strip()[0] == over.group(1)
        ):
            style = (over.group(1), True)
            title = lines[i + 1].strip()
            i += 3
        elif (
            line.strip()
            and not over
            and i + 1 < len(lines)
            and (under := _ADORNMENT.match(lines[i + 1]))
            and len(lines[i + 1].rstrip()) >= min(len(line.rstrip()), 3)
            and not line.startswith((" ", "\t"))
        ):
            style = (under.group(1), False)
            title = line.strip()
            i += 2
        else:
            out.append(line)
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        level = min(styles.index(style) + 1, 6)
        out.extend(["", "#" * level + " " + title, ""])
    return "\n".join(out)
