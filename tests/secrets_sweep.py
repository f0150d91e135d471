"""The secrets sweep of the e2e suite: no Secret value where secrets must not be.

While the suite's cluster runs, watches record every Secret value the tests and the operator
create (provider, caller and master keys; namespaces are deleted after each test, so a list
at the end would find few), and every version of every ConfigMap, LLMRoute and ModelQuota
status and Event. At the end, the sweep looks for each value in those, in the operator's logs
and in the proxies' logs (the process runner's pod logs). Secrets themselves and the pods'
env (secretKeyRef: a name and a key, not a value) are where secrets belong, and not swept.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION

# Shorter values would match by chance (a key "1", "true"); every key here is longer.
MIN_SECRET_LENGTH = 8
# Secret types whose values are no keys of llmroute's: Helm's release records hold the chart,
# service-account tokens the cluster's own credentials.
SWEPT_SECRET_TYPES = ("Opaque",)
WATCH_SECONDS = 5  # how long one watch request lasts; stop() waits at most this long


def secret_values(
    secret: Mapping[str, Any], types: Iterable[str] = SWEPT_SECRET_TYPES
) -> dict[str, str]:
    """A Secret's values (decoded) long enough to sweep for -> where each comes from."""
    if (secret.get("type") or "Opaque") not in types:
        return {}
    meta = secret.get("metadata") or {}
    where = f"Secret {meta.get('namespace')}/{meta.get('name')}"
    values = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            value = base64.b64decode(encoded).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if len(value.strip()) >= MIN_SECRET_LENGTH:
            values[value.strip()] = f"{where} key {key}"
    return values


def find_leaks(secrets: Mapping[str, str], places: Iterable[tuple[str, str]]) -> list[str]:
    """Every (secret, place) where a secret value appears in a place's text."""
    leaks = []
    for place, text in places:
        for value, source in secrets.items():
            if value in text:
                leaks.append(f"the value of {source} is in {place}")
    return leaks


def configmap_text(configmap: Mapping[str, Any]) -> str:
    return json.dumps(
        [configmap.get("data") or {}, configmap.get("binaryData") or {}], ensure_ascii=False
    )


def status_text(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj.get("status") or {}, ensure_ascii=False)


def event_text(event: Mapping[str, Any]) -> str:
    fields = ("reason", "message", "note", "action", "involvedObject", "regarding")
    return json.dumps({k: event.get(k) for k in fields}, ensure_ascii=False, default=str)


def _where(kind: str, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{kind} {meta.get('namespace')}/{meta.get('name')}"


class SecretsSweep:
    """Records the cluster's Secrets and public places while it runs; sweeps at the end."""

    def __init__(
        self,
        api: client.ApiClient,
        log_files: Callable[[], Iterable[Path]],
        secret_types: Iterable[str] = SWEPT_SECRET_TYPES,
    ) -> None:
        self.api = api
        self.log_files = log_files
        self.secret_types = tuple(secret_types)
        self.secrets: dict[str, str] = {}
        self.places: dict[str, str] = {}  # text -> where it was seen (each text once)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- recording -----------------------------------------------------------------------

    def record_secret(self, secret: Mapping[str, Any]) -> None:
        with self._lock:
            self.secrets.update(secret_values(secret, self.secret_types))

    def record_place(self, where: str, text: str) -> None:
        with self._lock:
            self.places.setdefault(text, where)

    def _sources(self) -> list[tuple[Callable[..., Any], tuple, Callable[[dict], None]]]:
        core = client.CoreV1Api(self.api)
        custom = client.CustomObjectsApi(self.api)

        def place(kind: str, text: Callable[[Mapping[str, Any]], str]) -> Callable[[dict], None]:
            return lambda obj: self.record_place(_where(kind, obj), text(obj))

        return [
            (core.list_secret_for_all_namespaces, (), self.record_secret),
            (core.list_config_map_for_all_namespaces, (), place("ConfigMap", configmap_text)),
            (core.list_event_for_all_namespaces, (), place("Event", event_text)),
            (
                custom.list_cluster_custom_object,
                (GROUP, VERSION, ROUTE_PLURAL),
                place("LLMRoute status", status_text),
            ),
            (
                custom.list_cluster_custom_object,
                (GROUP, VERSION, QUOTA_PLURAL),
                place("ModelQuota status", status_text),
            ),
        ]

    def _watch(self, list_fn: Callable[..., Any], args: tuple, record: Callable) -> None:
        version: str | None = None
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    list_fn, *args, resource_version=version, timeout_seconds=WATCH_SECONDS
                ):
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        record(obj)
            except ApiException as error:
                if error.status == 410:
                    version = None  # too old: start again from a fresh list
                else:
                    self._stop.wait(1)
            except Exception:
                self._stop.wait(1)

    def start(self) -> None:
        for list_fn, args, record in self._sources():
            thread = threading.Thread(
                target=self._watch, args=(list_fn, args, record), daemon=True, name="sweep"
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=WATCH_SECONDS * 4)

    def list_now(self) -> None:
        """Record what exists now, whatever the watches have seen."""
        for list_fn, args, record in self._sources():
            listed = list_fn(*args)
            items = listed["items"] if isinstance(listed, dict) else listed.items
            for obj in items:
                record(obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj))

    # -- the sweep -----------------------------------------------------------------------

    def place_count(self) -> int:
        """Texts recorded, plus the log files there are now."""
        return len(self.places) + sum(1 for p in self.log_files() if p.is_file())

    def leaks(self) -> list[str]:
        with self._lock:
            secrets = dict(self.secrets)
            places = [(where, text) for text, where in self.places.items()]
        for path in self.log_files():
            if path.is_file():
                places.append((f"log {path}", path.read_text(errors="replace")))
        return find_leaks(secrets, places)
