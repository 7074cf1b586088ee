"""Stop work for a client that has gone: cancel the request's handler when the connection closes.

Starlette notices a disconnect only while it streams a response. A whole-file synthesis would run to
its end for nobody, holding a worker (and after a mesh timeout the mesh has already retried elsewhere).
This pure ASGI middleware reads the connection once the request body is in; if the client disconnects
before the response is complete, the handler task is cancelled, which aborts the synthesis in flight
(``RunOptions.terminate``) and frees the worker. Streamed responses behave as before: their own
disconnect listener gets the same ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .requestlog import current


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body_done = asyncio.Event()
        gone = asyncio.Event()
        complete = False

        async def app_receive() -> Message:
            if body_done.is_set():  # the watcher owns the connection now: relay what it sees
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_done.set()
            return message

        async def app_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        async def watch() -> None:
            await body_done.wait()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        handler = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done() and not complete:  # the client left mid-request: stop its work
                current().aborted = True
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handler
                return
            await handler  # finished (or finishing after a complete response): results and errors as usual
        finally:
            for task in (handler, watcher):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
