"""A WebSocket echo server for the reverse proxy scenario: python3 ws_echo.py ADDRESS PORT (python3-websockets)."""

import asyncio
import sys

import websockets


async def echo(connection, *_):
    async for message in connection:
        await connection.send(f"echo: {message}")


async def main():
    async with websockets.serve(echo, sys.argv[1], int(sys.argv[2])):
        await asyncio.Future()


asyncio.run(main())
