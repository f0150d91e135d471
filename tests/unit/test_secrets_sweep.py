"""The e2e suite's secrets sweep finds a planted secret in every place it sweeps."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from secrets_sweep import (
    SecretsSweep,
    configmap_text,
    event_text,
    find_leaks,
    secret_values,
    status_text,
)

KEY = "sk-planted-provider-key-0123"


def secret(value: str, *, kind: str = "Opaque") -> dict:
    return {
        "type": kind,
        "metadata": {"namespace": "ns", "name": "provider-keys"},
        "data": {"openai": base64.b64encode(value.encode()).decode()},
    }


def test_secret_values_are_decoded_and_named() -> None:
    assert secret_values(secret(KEY)) == {KEY: "Secret ns/provider-keys key openai"}


@pytest.mark.parametrize("value", ["1", "true", "   short "])
def test_values_too_short_to_tell_are_left_out(value: str) -> None:
    assert secret_values(secret(value)) == {}


def test_helm_release_records_are_no_keys() -> None:
    assert secret_values(secret(KEY, kind="helm.sh/release.v1")) == {}


@pytest.mark.parametrize(
    ("place", "text"),
    [
        ("ConfigMap", configmap_text({"data": {"config.yaml": f"api_key: {KEY}\n"}})),
        ("ConfigMap", configmap_text({"binaryData": {"blob": KEY}})),
        ("status", status_text({"status": {"conditions": [{"message": f"bad key {KEY}"}]}})),
        ("Event", event_text({"reason": "Synced", "message": f"with {KEY}"})),
    ],
)
def test_a_planted_secret_is_found_in_each_kind_of_place(place: str, text: str) -> None:
    leaks = find_leaks(secret_values(secret(KEY)), [(place, text)])
    assert leaks == [f"the value of Secret ns/provider-keys key openai is in {place}"]


def test_a_clean_place_has_no_leak() -> None:
    text = configmap_text({"data": {"config.yaml": "api_key: os.environ/OPENAI_KEY\n"}})
    assert find_leaks(secret_values(secret(KEY)), [("ConfigMap", text)]) == []


def test_the_sweep_reads_the_recorded_places_and_the_logs(tmp_path: Path) -> None:
    operator_log = tmp_path / "operator.log"
    proxy_log = tmp_path / "ns_gw-litellm-0.log"
    operator_log.write_text("reconciled route gw\n")
    proxy_log.write_text(f"POST /chat/completions Authorization: Bearer {KEY}\n")
    sweep = SecretsSweep(api=None, log_files=lambda: [operator_log, proxy_log])  # type: ignore[arg-type]
    sweep.record_secret(secret(KEY))
    sweep.record_place("ConfigMap ns/gw-litellm", configmap_text({"data": {"a": "clean"}}))
    sweep.record_place("Event ns/gw", event_text({"message": f"key {KEY}"}))
    assert sorted(sweep.leaks()) == [
        "the value of Secret ns/provider-keys key openai is in Event ns/gw",
        f"the value of Secret ns/provider-keys key openai is in log {proxy_log}",
    ]
