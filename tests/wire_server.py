"""A MongoDB wire-protocol server that enforces $jsonSchema, for validator tests.

Runs under the Python 3.13 virtualenv made by scripts/setup-wire-venv.sh (mongoeco needs
3.13); the tests start it as a subprocess and talk to it with pymongo like any server.

    .venv-wire/bin/python tests/wire_server.py --port 27999

Prints `ready <port>` once it accepts connections; stops on SIGTERM.
"""

import argparse
import asyncio
import signal

from mongoeco.engines.memory import MemoryEngine
from mongoeco.wire.proxy import AsyncMongoEcoProxyServer


async def serve(host: str, port: int) -> None:
    server = AsyncMongoEcoProxyServer(engine=MemoryEngine(), host=host, port=port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {port}", flush=True)
    await stop.wait()
    await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
