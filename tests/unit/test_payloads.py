"""The payloads (code that runs inside other pods) agree with the renderer on what they share.

Neither can import llmroute where it runs, so each repeats a few names: file names, the keys
directory, environment variables, defaults. These tests read the rendered objects, as the
pods get them, and check each payload against them.
"""

from __future__ import annotations

import inspect
import os
import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute import client
from llmroute.payloads import GATEWAY_AUTH, OLLAMA_PULL, gateway_auth, payload_text
from llmroute.render import RenderedRoute
from manifests import render_manifest

GOLDEN = Path(__file__).parent / "golden"
# Where the kubelet puts a container's termination message when the pod names no other file.
KUBERNETES_TERMINATION_LOG = "/dev/termination-log"


def render_case(case: str) -> RenderedRoute:
    return render_manifest(yaml.safe_load((GOLDEN / case / "route.yaml").read_text()))


def workload(rendered: RenderedRoute, kind: str) -> dict[str, Any]:
    (obj,) = [o for o in rendered.objects if o["kind"] == kind]
    return obj


def only_container(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return container


def script_defaults() -> dict[str, str]:
    """The environment variables ollama_pull.sh reads, with the default of each."""
    return dict(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}", payload_text(OLLAMA_PULL)))


# -- the proxy's auth hook -------------------------------------------------------------------


def test_the_config_names_the_shipped_hook_and_its_function() -> None:
    rendered = render_case("callers-access")
    module, function = rendered.config["general_settings"]["custom_auth"].split(".")
    config_map = workload(rendered, "ConfigMap")
    assert config_map["data"][f"{module}.py"] == payload_text(GATEWAY_AUTH)
    assert inspect.iscoroutinefunction(getattr(gateway_auth, function))


def test_the_policy_is_where_the_hook_looks_for_it() -> None:
    # Next to the hook: the same ConfigMap, mounted as one directory; no variable moves it.
    rendered = render_case("callers-access")
    assert gateway_auth.POLICY_FILE_NAME in workload(rendered, "ConfigMap")["data"]
    proxy = only_container(workload(rendered, "Deployment"))
    names = {e["name"] for e in proxy["env"]}
    assert gateway_auth.POLICY_ENV not in names
    assert gateway_auth.KEYS_DIR_ENV not in names


def test_every_key_file_of_the_policy_is_mounted_where_the_hook_reads_it() -> None:
    rendered = render_case("callers-access")
    policy = yaml.safe_load(workload(rendered, "ConfigMap")["data"][gateway_auth.POLICY_FILE_NAME])
    pod = workload(rendered, "Deployment")["spec"]["template"]["spec"]
    (proxy,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    key_files = [policy["masterKeyFile"], *(c["keyFile"] for c in policy["callers"])]
    assert len(key_files) == 3
    for key_file in key_files:
        directory, name = posixpath.split(posixpath.join(gateway_auth.DEFAULT_KEYS_DIR, key_file))
        volume = mounts[directory]
        assert name in {item["path"] for item in secrets[volume]["items"]}


def test_the_master_key_reaches_the_hook_only_as_its_file() -> None:
    rendered = render_case("callers-access")
    deployment = workload(rendered, "Deployment")
    env = {e["name"]: e for e in only_container(deployment)["env"]}
    # No variable carries the route's master key (it would outlive revocation).
    assert not any(
        (e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name") == "gateway-admin"
        for e in env.values()
    )
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    master = volumes["master-key"]["secret"]
    assert master["secretName"] == "gateway-admin"  # spec.auth.masterKeySecretRef
    assert master["optional"] is True  # a removed key leaves no file: revoked
    # LiteLLM's own master key is the random one every worker sets for itself.
    master_key = rendered.config["general_settings"]["master_key"]
    assert master_key == f"os.environ/{gateway_auth.LITELLM_MASTER_KEY_ENV}"
    module, function = env["LITELLM_WORKER_STARTUP_HOOKS"]["value"].split(":")
    assert callable(getattr(gateway_auth, function))
    assert module == rendered.config["general_settings"]["custom_auth"].split(".")[0]
    assert env["PYTHONPATH"]["value"] == "/etc/litellm"


def test_seal_gives_litellm_a_fresh_random_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gateway_auth.LITELLM_MASTER_KEY_ENV, "sk-set-by-someone")
    gateway_auth.seal_litellm_master_key()
    first = os.environ[gateway_auth.LITELLM_MASTER_KEY_ENV]
    gateway_auth.seal_litellm_master_key()
    assert first != "sk-set-by-someone"
    assert os.environ[gateway_auth.LITELLM_MASTER_KEY_ENV] != first
    assert len(first) > 32


def test_task_tags_have_the_form_the_hook_and_the_client_use() -> None:
    tags = render_case("callers-access").config["litellm_settings"]["custom_prometheus_tags"]
    assert tags == [f"{gateway_auth.TASK_TAG_PREFIX}{t}" for t in ("summarize", "triage")]
    assert client.TASK_TAG_PREFIX == gateway_auth.TASK_TAG_PREFIX


# -- the managed Ollama's command ------------------------------------------------------------


def test_the_ollama_container_runs_the_shipped_script() -> None:
    ollama = only_container(workload(render_case("managed-ollama"), "StatefulSet"))
    shell, flag, script, *_ = ollama["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    assert script == payload_text(OLLAMA_PULL)


def test_the_script_reads_every_variable_the_renderer_sets_with_the_same_defaults() -> None:
    ollama = only_container(workload(render_case("managed-ollama"), "StatefulSet"))
    rendered = {e["name"]: e["value"] for e in ollama["env"] if e["name"].startswith("LLMROUTE_")}
    defaults = script_defaults()
    assert rendered, "the renderer sets none of the script's variables"
    for name, value in rendered.items():
        assert name in defaults, f"the script does not read {name}"
        if defaults.get(name):
            # The script run by hand behaves as in the pod.
            assert defaults[name] == value, name


def test_readiness_waits_for_the_file_the_script_writes() -> None:
    ollama = only_container(workload(render_case("managed-ollama"), "StatefulSet"))
    test, flag, ready_file = ollama["readinessProbe"]["exec"]["command"]
    assert (test, flag) == ("test", "-f")
    assert script_defaults()["LLMROUTE_OLLAMA_READY_FILE"] == ready_file


def test_a_failure_is_explained_where_kubernetes_reads_it() -> None:
    ollama = only_container(workload(render_case("managed-ollama"), "StatefulSet"))
    path = ollama.get("terminationMessagePath", KUBERNETES_TERMINATION_LOG)
    assert script_defaults()["LLMROUTE_TERMINATION_LOG"] == path


# -- the stream-usage callback -----------------------------------------------------------------


def test_stream_usage_asks_streams_for_their_usage_and_marks_it_for_removal() -> None:
    from llmroute.payloads.stream_usage import STRIP_MARKER, ask_for_stream_usage

    asked = ask_for_stream_usage({"model": "smart", "stream": True})
    assert asked["stream_options"] == {"include_usage": True}
    assert asked[STRIP_MARKER] is True
    kept = ask_for_stream_usage({"stream": True, "stream_options": {"include_obfuscation": False}})
    assert kept["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    # The caller asked itself: it gets the usage chunk, nothing is marked for removal.
    own = {"stream": True, "stream_options": {"include_usage": True}}
    assert ask_for_stream_usage(dict(own)) == own
    assert ask_for_stream_usage({"model": "smart"}) == {"model": "smart"}
    assert ask_for_stream_usage({"stream": False}) == {"stream": False}


def test_the_stream_usage_callback_is_the_one_the_config_names() -> None:
    from llmroute.payloads import stream_usage
    from llmroute.render.litellm_config import STREAM_USAGE_CALLBACK
    from llmroute.render.proxy import STREAM_USAGE_MODULE_FILE

    rendered = render_case("priority-chain")
    module, _, instance = STREAM_USAGE_CALLBACK.rpartition(".")
    assert f"{module}.py" == STREAM_USAGE_MODULE_FILE
    assert STREAM_USAGE_CALLBACK in rendered.config["litellm_settings"]["callbacks"]
    config_map = workload(rendered, "ConfigMap")
    assert config_map["data"][STREAM_USAGE_MODULE_FILE] == payload_text("stream_usage.py")
    assert isinstance(getattr(stream_usage, instance), stream_usage.StreamUsage)
    assert "llmroute" not in {
        name.split(".")[0]
        for name in re.findall(r"^(?:from|import) (\S+)", payload_text("stream_usage.py"), re.M)
    }
