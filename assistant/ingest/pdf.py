"""PDF files to normalised text (the text layer pypdf extracts, as plain text)."""

from __future__ import annotations

import io

from assistant.ingest.text import UnreadableFile, normalise_plain_text, short_error

__all__ = ["read_pdf"]


def read_pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    # pypdf raises a wide variety of exceptions on damaged files (PdfReadError, but also
    # ValueError, KeyError, TypeError, struct.error, zlib.error…), so this one per-file
    # boundary catches Exception and turns it into a reason.
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:  # many PDFs are "encrypted" with an empty password and open in any reader
                unlocked = bool(reader.decrypt(""))
            except Exception:  # see above; e.g. a missing crypto dependency
                unlocked = False
            if not unlocked:
                raise UnreadableFile("encrypted PDF (password protected); save it unprotected")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnreadableFile:
        raise
    except FileNotDecryptedError:
        raise UnreadableFile("encrypted PDF (password protected); save it unprotected") from None
    except Exception as err:  # see above: the per-file boundary
        raise UnreadableFile(f"corrupt or truncated PDF: {short_error(err)}") from None
    text = normalise_plain_text("\n\n".join(pages))
    if not text:
        raise UnreadableFile("PDF has no extractable text (scanned images?)")
    return text
