"""Writes the PDF fixtures (run once; the outputs are committed): a small real PDF with text on
two pages, the same PDF encrypted with a password, and a damaged one.

    .venv/bin/python tests/data/knowledge/make_pdfs.py
"""

from __future__ import annotations

import io
from pathlib import Path

from pypdf import PdfReader, PdfWriter

HERE = Path(__file__).parent

PAGES = [
    [
        "Training Manual",
        "Resume training from a checkpoint",
        "Pass --resume with the path of the last checkpoint file to continue an",
        "interrupted training run. The optimizer state and the epoch are restored.",
    ],
    [
        "Mixed precision",
        "Add --amp to train with automatic mixed precision. It halves the GPU memory",
        "of activations and is faster on recent GPUs.",
    ],
]


def text_pdf(pages: list[list[str]]) -> bytes:
    """A minimal PDF with Helvetica text, one text line per entry."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    font_id = 3 + 2 * len(pages)
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    for i, lines in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Contents {content_id} 0 R /Resources << /Font << /F1 {font_id} 0 R >> >> >>"
            ).encode()
        )
        ops = ["BT", "/F1 12 Tf", "72 720 Td", "16 TL"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def main() -> None:
    plain = text_pdf(PAGES)
    (HERE / "corpus" / "en" / "manual.pdf").write_bytes(plain)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain)))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    encrypted = io.BytesIO()
    writer.write(encrypted)
    (HERE / "broken" / "encrypted.pdf").write_bytes(encrypted.getvalue())
    # A PDF cut off halfway, as an interrupted download leaves it.
    (HERE / "broken" / "truncated.pdf").write_bytes(plain[: len(plain) // 3])


if __name__ == "__main__":
    main()
