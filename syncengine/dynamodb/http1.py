"""HTTP/1.1 framing over asyncio streams, for ``syncengine.dynamodb.client``: one keep-alive
connection, and an answer read by Content-Length, chunked, or to the end of the connection
(https://www.rfc-editor.org/rfc/rfc9112#section-6)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection (asyncio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """An HTTP/1.1 answer (status, lower-case headers, body by Content-Length, chunked, or to the
    end of the connection) and whether the connection may carry another request."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    version, _, rest = status_line.decode("latin-1").partition(" ")
    status = rest.partition(" ")[0]
    headers: dict[str, str] = {}
    for line in header_block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body, keep_alive = await reader.read(), False
    return Answer(int(status), headers, body), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, up to the empty line
        pass
    return b"".join(chunks)
