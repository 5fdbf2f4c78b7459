#!/usr/bin/env python3
"""An OpenRouter stand-in with a bad day's behaviour, for the soak test and benchmark.

Speaks the chat-completions wire format on POST /api/v1/chat/completions. Each request gets
one behaviour, drawn from a seeded mix (so runs repeat) relative to the server's deadline D
(--deadline-ms):
  near     answers after 0.8-1.2 D: the response races the caller's deadline
  fast     answers after 0-0.3 D
  hang     sends nothing, keeps the connection open until the caller gives up
  reset    sends the head and part of the body, then resets the connection (RST)
  drip     sends the head at once, then the body a few bytes at a time over about 1.5 D
  error    HTTP 500 with an OpenRouter error object
POST /control {"mode": "hang"} makes every later request hang ("mix" restores the mix);
GET /stats answers the counts. Prints {"port": N} on stdout once listening.
Standard library only; bounded by the caller's lifetime (it exits on SIGTERM/SIGKILL).
"""
import argparse
import asyncio
import json
import random
import socket
import struct
import sys

TICKET = json.dumps({
    "title": "Add CSV export to reports",
    "description": "Users need to export report tables as CSV.",
    "acceptanceCriteria": ["An Export button downloads the table as CSV", "Columns match the table"],
    "priority": "high", "storyPoints": 5, "labels": ["reports", "export"],
})
MIX = [("near", 40), ("fast", 20), ("hang", 10), ("reset", 10), ("drip", 10), ("error", 10)]


class Upstream:
    def __init__(self, deadline: float, seed: int):
        self.deadline = deadline
        self.random = random.Random(seed)
        self.mode = "mix"
        self.counts = {name: 0 for name, _ in MIX}
        self.open = 0

    def pick(self) -> str:
        if self.mode != "mix":
            return self.mode
        roll = self.random.uniform(0, 100)
        for name, weight in MIX:
            roll -= weight
            if roll <= 0:
                return name
        return MIX[0][0]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self.respond(method, path, body, writer) or headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.open -= 1
            if not writer.is_closing():
                writer.close()

    @staticmethod
    def head(status: str, length: int) -> bytes:
        return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
                "Connection: keep-alive\r\n\r\n").encode()

    async def send(self, writer, status: str, payload: bytes) -> None:
        writer.write(self.head(status, len(payload)) + payload)
        await writer.drain()

    async def respond(self, method: str, path: str, body: bytes, writer) -> bool:
        """Answers one request; False when the connection is done with."""
        if path == "/control":
            self.mode = json.loads(body or b"{}").get("mode", "mix")
            await self.send(writer, "200 OK", json.dumps({"mode": self.mode}).encode())
            return True
        if path == "/stats":
            await self.send(writer, "200 OK", json.dumps({"counts": self.counts, "open": self.open}).encode())
            return True
        behaviour = self.pick()
        self.counts[behaviour] += 1
        answer = json.dumps({"id": "gen-soak", "choices": [{"index": 0, "message": {"role": "assistant", "content": TICKET}}]}).encode()
        d = self.deadline
        if behaviour == "near":
            await asyncio.sleep(self.random.uniform(0.8 * d, 1.2 * d))
            await self.send(writer, "200 OK", answer)
        elif behaviour == "fast":
            await asyncio.sleep(self.random.uniform(0, 0.3 * d))
            await self.send(writer, "200 OK", answer)
        elif behaviour == "hang":
            await asyncio.sleep(3600)
        elif behaviour == "reset":
            await asyncio.sleep(self.random.uniform(0, 0.5 * d))
            writer.write(self.head("200 OK", len(answer)) + answer[: len(answer) // 3])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        elif behaviour == "drip":
            writer.write(self.head("200 OK", len(answer)))
            await writer.drain()
            step = max(1, len(answer) // 20)
            for start in range(0, len(answer), step):
                await asyncio.sleep(1.5 * d / 20)
                writer.write(answer[start:start + step])
                await writer.drain()
        else:
            await self.send(writer, "500 Internal Server Error", json.dumps({"error": {"code": 500, "message": "upstream overloaded"}}).encode())
        return True


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deadline-ms", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--mode", default="mix")
    args = parser.parse_args()
    upstream = Upstream(args.deadline_ms / 1000, args.seed)
    upstream.mode = args.mode
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", args.port, reuse_address=True, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
