"""The Telethon backend's connection (actors/backends/telethon_backend.fleet_connection)
writes a packet at once only when nothing is waiting to be written before it: against a real
TCP peer on 127.0.0.1, packets arrive in the order they were sent, whether written at once or
queued for Telethon's send loop."""
from __future__ import annotations

import asyncio
import struct

from actors.backends.readgate import ReadGate
from actors.backends.telethon_backend import fleet_connection


class _Loggers(dict):
    def __missing__(self, key):
        import logging
        return logging.getLogger(key)


async def _packets(reader, n):
    out = []
    for _ in range(n):
        length, _seq = struct.unpack("<ii", await reader.readexactly(8))
        body = await reader.readexactly(length - 12)
        await reader.readexactly(4)          # crc
        out.append(body)
    return out


def test_direct_write_when_idle_queued_behind_a_waiting_packet_order_kept():
    async def main():
        got = asyncio.get_running_loop().create_future()

        async def serve(reader, writer):
            got.set_result(await _packets(reader, 4))
            writer.close()
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cls = fleet_connection(ReadGate(8, 2))
        conn = cls("127.0.0.1", port, 2, loggers=_Loggers())
        await conn.connect(timeout=5)
        try:
            await conn.send(b"a" * 16)
            assert cls.direct_writes == 1, "idle: written at once"
            conn._send_queue.put_nowait(b"q" * 16)   # a packet waiting for the send loop
            await conn.send(b"b" * 16)
            assert cls.direct_writes == 1, "must queue behind the waiting packet"
            await asyncio.sleep(0.05)                  # the send loop writes both
            await conn.send(b"c" * 16)
            assert cls.direct_writes == 2
            assert await asyncio.wait_for(got, 5) == [b"a" * 16, b"q" * 16, b"b" * 16,
                                                      b"c" * 16]
        finally:
            await conn.disconnect()
            server.close()
            await server.wait_closed()
    asyncio.run(main())
