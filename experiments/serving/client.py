"""A small Python client of ``fusionsim serve`` (standard library only: one kept-alive HTTP connection).

    client = FusionClient("http://127.0.0.1:8000")
    answer = client.rank([{"context": {...}, "candidates": [...], "scores": {...}}])[0]
    client.reward([{"event_id": answer["event_id"], "clicks": [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]}])

Not thread-safe: give each thread its own client.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit


class ClientError(RuntimeError):
    """An answer other than 200: ``status``, the ``field`` the server named and its message."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.field = status, field


class FusionClient:
    """Calls of the service at ``url`` (``http://host:port``), each waiting at most ``timeout`` seconds."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--server {url!r} is not allowed: must be an http://host:port address")
        self.url, self.host, self.port, self.timeout = url, parts.hostname, parts.port or 80, timeout
        self._connection: http.client.HTTPConnection | None = None

    def _call(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"} if data is not None else {}
        for attempt in (0, 1):  # a kept-alive connection the server closed is reopened once
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._connection.request(method, path, body=data, headers=headers)
                response = self._connection.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, body: object = None) -> object:
        status, raw = self._call(method, path, body)
        answer = json.loads(raw) if raw else None
        if status != 200:
            error = answer if isinstance(answer, dict) else {}
            raise ClientError(status, str(error.get("error", raw[:200])), error.get("field"))
        return answer

    def rank(self, requests: list[dict], slate_size: int | None = None) -> list[dict]:
        """The answers (event_id, slate, action, propensity, weights, policy_version) of a batch of requests."""
        body: dict = {"requests": requests}
        if slate_size is not None:
            body["slate_size"] = slate_size
        return self._json("POST", "/rank", body)["results"]

    def reward(self, outcomes: list[dict]) -> list[str]:
        """Post outcomes (event_id, clicks, optional purchases and revenue); each one's status: joined,
        duplicate or late."""
        return self._json("POST", "/reward", {"rewards": outcomes})["statuses"]

    def health(self) -> dict:
        return self._json("GET", "/health")

    def metrics(self) -> str:
        status, raw = self._call("GET", "/metrics")
        if status != 200:
            raise ClientError(status, raw[:200].decode(errors="replace"))
        return raw.decode()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
