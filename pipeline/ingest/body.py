"""Reading a request body whole, with one hard size cap before and after decompression.

aiohttp's own request decompression is turned off for the collector (``auto_decompress=False``): it would
accept codings we do not want (zstd, br when their libraries happen to be installed), answer a corrupt
stream with its own plain-text 400, and how much it inflates before the size check depends on its version.
Here instead:

* ``Content-Encoding`` may be absent, ``identity``, ``gzip`` (``x-gzip``) or ``deflate`` (zlib, or raw
  deflate as some clients send it); anything else, stacked codings included, is 415.
* The body as sent is read first, at most ``max_bytes`` of it (else 413, from ``Content-Length`` alone
  when it says so).
* It is then inflated with ``zlib.decompressobj`` and ``max_length``, so at most ``max_bytes + 1`` bytes are
  ever produced, in steps of 1 MiB: a gzip bomb (1 GiB from 1 MB) is refused with 413 after inflating just
  past the cap.
  Inflating runs in one synchronous stretch, without an ``await``, so concurrent requests never hold
  partly inflated bodies at the same time: the collector's memory for bombs stays about ``max_bytes``
  (plus the compressed bodies) however many arrive together.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

GZIP_CODINGS = frozenset({"gzip", "x-gzip"})
DEFLATE = "deflate"
SUPPORTED_CODINGS = ("identity", "gzip", "deflate")
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip member (RFC 1952)
_ZLIB_WBITS = zlib.MAX_WBITS  # HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2, RFC 1950)
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS  # what some clients send as "deflate" instead
_READ_CHUNK = 64 * 1024
# Inflated bytes per zlib call. zlib's binding joins the blocks of one call into a new bytes object, so a
# call producing the whole body would hold it twice; in steps, a refused bomb holds ``max_bytes`` + a step.
_INFLATE_STEP = 1024 * 1024


class BodyRefused(Exception):
    """The body cannot be read: answered with ``status`` and ``{"error": error, "detail": detail}``."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


@dataclass(frozen=True)
class BodyReader:
    """Reads bodies of at most ``max_bytes`` (``METERLINE_INGEST_MAX_BODY_BYTES``), decompressed."""

    max_bytes: int

    async def read(self, request: web.Request) -> bytes:
        """The body, decoded from its ``Content-Encoding``. Raises :class:`BodyRefused` (413 too large,
        415 unsupported coding, 400 corrupt or truncated compressed data or an interrupted upload)."""
        coding = content_coding(request.headers.getall("Content-Encoding", []))
        raw = await self._read_raw(request)
        if coding is None:
            return raw
        return inflate(raw, coding, self.max_bytes)

    async def _read_raw(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_bytes:
            raise self.too_large()
        chunks, size = [], 0
        try:
            while chunk := await request.content.read(_READ_CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    raise self.too_large()
                chunks.append(chunk)
        except (ConnectionError, RequestPayloadError, HttpProcessingError) as error:  # cut off, bad chunking
            raise BodyRefused(400, "incomplete_body", f"the body could not be read: {type(error).__name__}") from None
        return b"".join(chunks)

    def too_large(self) -> BodyRefused:
        return BodyRefused(413, "body_too_large", f"the body exceeds {self.max_bytes} bytes (after decompression); "
                                                  "split it into several requests")


def content_coding(values: list[str]) -> str | None:
    """The one coding to undo (``"gzip"`` or ``"deflate"``), or None for identity. Raises a 415
    :class:`BodyRefused` for any other or for more than one coding."""
    codings = [c.strip().lower() for value in values for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) == 1 and (codings[0] in GZIP_CODINGS or codings[0] == DEFLATE):
        return "gzip" if codings[0] in GZIP_CODINGS else DEFLATE
    if not codings:
        return None
    shown = ", ".join(codings)[:100]
    raise BodyRefused(415, "unsupported_content_encoding",
                      f"Content-Encoding {shown!r} is not read; send one of {', '.join(SUPPORTED_CODINGS)}")


def inflate(data: bytes, coding: str, max_bytes: int) -> bytes:
    """``data`` decompressed (``coding`` "gzip", concatenated members allowed, or "deflate"), never producing
    more than ``max_bytes + 1`` bytes. Raises :class:`BodyRefused`: 413 past ``max_bytes``, 400
    ``invalid_compression`` for corrupt, truncated or trailing data."""
    out: list[bytes] = []
    size = 0
    pending = data
    inflater = _inflater(coding, data)
    try:
        while True:
            piece = inflater.decompress(pending, min(_INFLATE_STEP, max_bytes - size + 1))
            size += len(piece)
            if size > max_bytes:
                out.clear()  # freed now, not whenever the exception's traceback (which holds this frame) goes
                raise BodyReader(max_bytes).too_large()
            out.append(piece)
            if inflater.eof:
                pending = inflater.unused_data
                if not pending:
                    break
                if coding != "gzip":
                    raise zlib.error("data after the end of the deflate stream")
                inflater = zlib.decompressobj(_GZIP_WBITS)  # the next gzip member (RFC 1952 2.2)
                continue
            pending = inflater.unconsumed_tail
            if not pending and not piece:
                raise zlib.error("the compressed data ends early")
    except zlib.error as error:
        raise BodyRefused(400, "invalid_compression", f"the {coding} body cannot be inflated: {error}") from None
    return b"".join(out)


def _inflater(coding: str, data: bytes):
    if coding == "gzip":
        return zlib.decompressobj(_GZIP_WBITS)
    # A zlib header's low nibble is 8 (RFC 1950 2.2); anything else is taken for raw deflate.
    return zlib.decompressobj(_ZLIB_WBITS if data[:1] and data[0] & 0x0F == 8 else _RAW_DEFLATE_WBITS)
