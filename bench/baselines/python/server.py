"""Baseline for bench/compare: the echo job written the way most Python voice pipelines write
it, on the `websockets` package (asyncio). Per chunk it does what exotel-voicebot's echo bot
does: parse the JSON event, decode the base64 payload to PCM, queue it behind ECHO_DELAY_MS of
silence, and send it back in Exotel-sized chunks (200 ms at 8 kHz, 100 ms otherwise, whole
20 ms frames), paced so that at most MEDIA_LEAD_MS of audio is ahead of real time; on `stop` it
closes the socket. Same defaults as the Rust server (400 ms delay, 200 ms lead)."""

import asyncio
import base64
import json
import os
import time

from websockets.asyncio.server import serve

PORT = int(os.environ.get("PORT", "3000"))
DELAY_MS = int(os.environ.get("ECHO_DELAY_MS", "400"))
LEAD = int(os.environ.get("MEDIA_LEAD_MS", "200")) / 1000


class Call:
    def __init__(self, ws):
        self.ws = ws
        self.stream_sid = None
        self.rate = 8000
        self.frame = 160
        self.min = 1600
        self.queue = bytearray()  # 16-bit PCM
        self.started = None  # pacer clock, None after an underrun
        self.sent = 0.0
        self.more = asyncio.Event()

    def ahead(self, now):
        if self.started is not None and self.started + self.sent > now:
            return self.started + self.sent - now
        self.started = None
        self.sent = 0.0
        return 0.0

    async def sender(self):
        while True:
            if not self.queue:
                self.more.clear()
                await self.more.wait()
                continue
            now = time.monotonic()
            ahead = self.ahead(now)
            if ahead >= LEAD:
                await asyncio.sleep(ahead - LEAD)
                continue
            take = min(len(self.queue) // 2, self.min)
            if take < self.min and ahead > 0:
                # A short piece waits for more audio while Exotel still has some to play.
                self.more.clear()
                try:
                    await asyncio.wait_for(self.more.wait(), ahead)
                except TimeoutError:
                    pass
                continue
            samples = max(-(-take // self.frame) * self.frame, self.min)
            pcm = bytes(self.queue[: take * 2]) + bytes(2 * (samples - take))
            del self.queue[: take * 2]
            if self.started is None:
                self.started = now
            self.sent += samples / self.rate
            await self.ws.send(
                json.dumps(
                    {
                        "event": "media",
                        "stream_sid": self.stream_sid,
                        "media": {"payload": base64.b64encode(pcm).decode()},
                    }
                )
            )

    async def run(self):
        sender = None
        try:
            async for message in self.ws:
                event = json.loads(message)
                kind = event.get("event")
                if kind == "start":
                    start = event["start"]
                    self.stream_sid = event.get("stream_sid") or start["stream_sid"]
                    self.rate = int(start["media_format"]["sample_rate"]) or 8000
                    self.frame = self.rate // 50
                    self.min = self.rate * (200 if self.rate == 8000 else 100) // 1000
                    self.queue += bytes(2 * (self.rate * DELAY_MS // 1000))
                    sender = asyncio.create_task(self.sender())
                elif kind == "media" and sender is not None:
                    self.queue += base64.b64decode(event["media"]["payload"])
                elif kind == "stop":
                    break
                else:
                    continue
                self.more.set()
        finally:
            if sender is not None:
                sender.cancel()
            await self.ws.close()


async def handler(ws):
    await Call(ws).run()


async def main():
    async with serve(handler, "127.0.0.1", PORT, compression=None, max_size=2**20):
        print(f"python websockets baseline on 127.0.0.1:{PORT}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
