#!/usr/bin/env python3
"""HTTP/3 interop client for the gateway's tests, on aioquic's H3 connection API.

Usage: aioquic_get.py HOST PORT PATH CAFILE [METHOD [BODY]]

Sends one request over HTTP/3 (ALPN h3, SNI localhost, trusting only CAFILE) and prints one JSON
line: {"status": int, "headers": {name: value}, "body": str}. Exits 1 on any failure.
"""
import asyncio
import json
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._events = {}
        self._waiters = {}

    def quic_event_received(self, event):
        for ev in self._http.handle_event(event):
            if isinstance(ev, (HeadersReceived, DataReceived)):
                self._events.setdefault(ev.stream_id, []).append(ev)
                if ev.stream_ended:
                    waiter = self._waiters.pop(ev.stream_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(self._events.pop(ev.stream_id))

    async def request(self, method, authority, path, body=b""):
        stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"aioquic-interop"),
        ]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        self._http.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self._http.send_data(stream_id, body, end_stream=True)
        waiter = self._loop.create_future()
        self._waiters[stream_id] = waiter
        self.transmit()
        events = await asyncio.wait_for(waiter, 10)
        status, out_headers, data = 0, {}, b""
        for ev in events:
            if isinstance(ev, HeadersReceived):
                for name, value in ev.headers:
                    if name == b":status":
                        status = int(value)
                    else:
                        out_headers[name.decode()] = value.decode()
            else:
                data += ev.data
        return status, out_headers, data


async def main(host, port, path, cafile, method="GET", body=""):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    config.load_verify_locations(cafile)
    async with connect(host, port, configuration=config, create_protocol=H3Client) as client:
        status, headers, data = await client.request(
            method, f"localhost:{port}", path, body.encode()
        )
    print(json.dumps({"status": status, "headers": headers, "body": data.decode("utf-8", "replace")}))


if __name__ == "__main__":
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:]))
    except Exception as e:  # noqa: BLE001 - any failure is a failed fetch
        print(f"aioquic fetch failed: {e!r}", file=sys.stderr)
        sys.exit(1)
