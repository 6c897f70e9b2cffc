"""JSON over HTTP for the managers that ask a server (scorer or reward model), with retries."""

from __future__ import annotations

import asyncio
from typing import Any


class JSONClient:
    """POSTs JSON to one URL from inside the reward worker's event loop; the session opens lazily
    (it must belong to the loop that uses it). Client errors (4xx) fail at once, the rest retry."""

    def __init__(self, url: str, what: str, timeout_s: float = 120.0, max_retries: int = 3):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{what}: {url!r} must start with http:// or https://")
        if max_retries < 1:
            raise ValueError(f"max_retries={max_retries}: must be at least 1")
        self.url, self.what, self.timeout_s, self.max_retries = url, what, timeout_s, max_retries
        self._session: Any = None

    async def post(self, payload: dict) -> dict:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        for attempt in range(self.max_retries):
            try:
                async with self._session.post(self.url, json=payload) as response:
                    if 400 <= response.status < 500:
                        raise RuntimeError(
                            f"{self.url} refused the request (HTTP {response.status}): {await response.text()}"
                        )
                    response.raise_for_status()
                    return await response.json()
            except (TimeoutError, aiohttp.ClientError) as error:
                if attempt == self.max_retries - 1:
                    raise RuntimeError(
                        f"{self.url} unreachable after {self.max_retries} tries ({error!r}); check {self.what} "
                        "and that the server is up"
                    ) from error
                await asyncio.sleep(2**attempt)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
