"""An echo bot built on pipecat's TwilioFrameSerializer, unchanged but for its REST hang-up
turned off (auto_hang_up=False): what dev/pipecat-twilio puts behind BOT_PROTOCOL=twilio.

It reads Twilio's `connected` and `start`, makes the serializer from the start's streamSid and
callSid as pipecat's Twilio examples do, turns each message into pipecat frames with
`deserialize`, and sends each caller audio frame back through `serialize`. At the end of each
stream it prints one line: what it got and sent."""

import asyncio
import json
import sys
import types

import websockets
from pipecat.frames.frames import InputAudioRawFrame, InputDTMFFrame, OutputAudioRawFrame
from pipecat.serializers.twilio import TwilioFrameSerializer

PIPELINE_RATE = 16000


async def stream(ws):
    connected = json.loads(await ws.recv())
    start = json.loads(await ws.recv())
    assert connected["event"] == "connected", connected
    assert start["event"] == "start", start
    serializer = TwilioFrameSerializer(
        stream_sid=start["start"]["streamSid"],
        call_sid=start["start"]["callSid"],
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    await serializer.setup(types.SimpleNamespace(audio_in_sample_rate=PIPELINE_RATE))
    got = {"audio_frames": 0, "audio_bytes": 0, "dtmf": "", "other": 0, "sent": 0}
    async for message in ws:
        frame = await serializer.deserialize(message)
        if isinstance(frame, InputAudioRawFrame):
            got["audio_frames"] += 1
            got["audio_bytes"] += len(frame.audio)
            echo = OutputAudioRawFrame(
                audio=frame.audio, sample_rate=frame.sample_rate, num_channels=1
            )
            out = await serializer.serialize(echo)
            if out:
                await ws.send(out)
                got["sent"] += 1
        elif isinstance(frame, InputDTMFFrame):
            got["dtmf"] += frame.button.value
        else:
            got["other"] += 1
    print(
        json.dumps({"start": start["start"]["mediaFormat"], **got}), flush=True
    )


async def main():
    port = int(sys.argv[1])
    async with websockets.serve(stream, "127.0.0.1", port):
        print(f"pipecat twilio bot on ws://127.0.0.1:{port}/", flush=True)
        await asyncio.Future()


asyncio.run(main())
