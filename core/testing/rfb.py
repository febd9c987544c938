"""A synthetic RFB viewer: what a browser's noVNC does on the wire, without a browser.

An RFB 3.8 client (security None, Raw encoding only) over the console websocket (share link ->
cookie -> ``/console/<uuid>/ws``), over any websocket, or straight on QEMU's VNC port. The console
benchmark, the soak and the load test use it to open many real consoles at once; pixels are
counted and dropped, never copied out, so that the client costs as little as it can next to the
paths it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import aiohttp

from core.web.console.routes import COOKIE


class RfbViewer:
    """An RFB 3.8 client over a websocket (``None``: a subclass brings its own transport)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse | None) -> None:
        self.ws = ws
        self._buffer = bytearray()
        self.width = self.height = self.bpp = 0
        self._idle: asyncio.Task[None] | None = None
        self.ended = False
        """Set by :meth:`idle` when the console ended (the server closed it)."""

    async def _chunk(self) -> bytes:
        assert self.ws is not None
        message = await self.ws.receive()
        if message.type != aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"the console closed ({message.type.name} {message.data!r})")
        data: bytes = message.data
        return data

    async def _send(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += await self._chunk()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def _skip(self, size: int) -> None:
        taken = min(size, len(self._buffer))
        del self._buffer[:taken]
        size -= taken
        while size:
            data = await self._chunk()
            if len(data) <= size:
                size -= len(data)
            else:
                self._buffer += data[size:]
                size = 0

    async def handshake(self) -> None:
        version = await self._read(12)
        if not version.startswith(b"RFB 003."):
            raise ConnectionError(f"not an RFB server: {version!r}")
        await self._send(b"RFB 003.008\n")
        count = (await self._read(1))[0]
        types = await self._read(count)
        if 1 not in types:
            raise ConnectionError(f"no security type None among {list(types)}")
        await self._send(b"\x01")
        (result,) = struct.unpack(">I", await self._read(4))
        if result != 0:
            raise ConnectionError(f"security result {result}")
        await self._send(b"\x01")  # ClientInit: shared
        self.width, self.height = struct.unpack(">HH", await self._read(4))
        pixel_format = await self._read(16)
        self.bpp = pixel_format[0]
        (name_length,) = struct.unpack(">I", await self._read(4))
        await self._read(name_length)
        await self._send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: Raw

    async def full_frame(self) -> int:
        """Ask for the whole screen (non-incremental) and read the update; returns its pixel bytes."""
        await self._send(struct.pack(">BBHHHH", 3, 0, 0, 0, self.width, self.height))
        while True:
            kind = (await self._read(1))[0]
            if kind == 0:
                break
            if kind == 2:  # Bell
                continue
            if kind == 3:  # ServerCutText
                _pad, length = struct.unpack(">3sI", await self._read(7))
                await self._read(length)
                continue
            raise ConnectionError(f"unexpected server message {kind}")
        _pad, rects = struct.unpack(">BH", await self._read(3))
        pixels = 0
        for _ in range(rects):
            _x, _y, width, height, encoding = struct.unpack(">HHHHi", await self._read(12))
            if encoding != 0:
                raise ConnectionError(f"unexpected encoding {encoding}")
            size = width * height * self.bpp // 8
            await self._skip(size)
            pixels += size
        return pixels

    def idle(self) -> None:
        """Stay open as an idle browser does: read and drop what comes, which answers the server's
        heartbeat pings (a websocket never read is closed after a missed pong); :attr:`ended` tells
        when the console closed. Nothing else may read the viewer meanwhile."""
        self._idle = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.ws is not None
        while (await self.ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                                     aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            pass
        self.ended = True

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.ws is not None:
            await self.ws.close()


class VncViewer(RfbViewer):
    """The same client straight on QEMU's VNC port: no websocket, no proxy (QEMU's own ceiling)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(None)
        self.reader, self.writer = reader, writer

    async def _chunk(self) -> bytes:
        data = await self.reader.read(1 << 20)
        if not data:
            raise ConnectionError("QEMU closed the VNC connection")
        return data

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def open_through_server(session: aiohttp.ClientSession, base: str, link: str) -> RfbViewer:
    """Share link -> session cookie -> the console websocket, as a browser does it."""
    async with session.get(link, allow_redirects=False) as answer:
        if answer.status != 303:
            raise ConnectionError(f"the share link answered {answer.status}")
        return await open_console(session, base, answer.headers["Location"], answer.cookies[COOKIE].value)


async def open_from_portal(session: aiohttp.ClientSession, base: str, uuid: str, csrf: str) -> RfbViewer:
    """The console button of "My VMs" for a signed-in student (``session`` holds the portal's
    session cookie; ``csrf``: the page's token), then its websocket, the RFB handshake done."""
    async with session.post(f"{base}/vms/{uuid}/console", data={"csrf": csrf},
                            allow_redirects=False) as answer:
        if answer.status != 303:
            raise ConnectionError(f"the portal's console button answered {answer.status}")
        return await open_console(session, base, answer.headers["Location"], answer.cookies[COOKIE].value)


async def open_console(session: aiohttp.ClientSession, base: str, where: str, secret: str) -> RfbViewer:
    """The console websocket of ``where`` (``/console/<uuid>``) under the console cookie ``secret``
    (what a share link or the portal's console button gave), the RFB handshake done."""
    ws = await session.ws_connect(f"{base}{where}/ws", protocols=("binary",), max_msg_size=0,
                                  headers={"Origin": base, "Cookie": f"{COOKIE}={secret}"})
    viewer = RfbViewer(ws)
    await viewer.handshake()
    return viewer


async def open_direct(session: aiohttp.ClientSession, port: int) -> RfbViewer:
    ws = await session.ws_connect(f"ws://127.0.0.1:{port}/", protocols=("binary",), max_msg_size=0)
    viewer = RfbViewer(ws)
    await viewer.handshake()
    return viewer


async def open_vnc(port: int) -> RfbViewer:
    viewer = VncViewer(*await asyncio.open_connection("127.0.0.1", port, limit=1 << 22))
    await viewer.handshake()
    return viewer
