"""The process runner's pure part: a pod spec -> argv, env and files; plus one real launch."""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import signal
import socket
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import yaml

from built_tools import require_tools
from localcluster.fakes import FakeOpenAI
from localcluster.runner import (
    KEYS_DIR_ENV,
    FileContent,
    PodNotReady,
    ProcessRunner,
    UnsupportedPod,
    launch_proxy,
    parse_quantity,
    plan_ollama_launch,
    plan_proxy_launch,
    pod_component,
    pod_is_running,
    pod_references,
    pod_status_patch,
    sync_files,
    wait_http_ok,
)
from localcluster.wait import wait_for
from manifests import render_manifest

LITELLM = Path("/venv/bin/litellm")
BASE_ENV = {"PATH": "/venv/bin:/usr/bin", "HOME": "/home/test"}
POD_DIR = Path("/work/pods/ns_gw-litellm-abc")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str, **data: str) -> dict:
    return {"metadata": {"name": name}, "data": {k: b64(v) for k, v in data.items()}}


def configmap(name: str, **data: str) -> dict:
    return {"metadata": {"name": name}, "data": data}


def proxy_pod(**container_overrides) -> dict:
    """A proxy pod as the operator renders it (plus a few less common env/volume forms)."""
    container = {
        "name": "litellm",
        "image": "ghcr.io/berriai/litellm:main-v1.106.2",
        "args": ["--config", "/etc/litellm/config.yaml", "--port", "4000", "--num_workers", "2"],
        "ports": [{"name": "http", "containerPort": 4000}],
        "env": [
            {
                "name": "OPENAI_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": "provider-keys", "key": "openai"}},
            },
            {
                "name": "MAYBE_KEY",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
            },
            {
                "name": "LOG_LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GREETING", "value": "hi-$(POD_NAME)-$$(literal)-$(UNDEFINED)"},
            {
                "name": "CPU_LIMIT",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}},
            },
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/litellm", "readOnly": True},
            {"name": "caller-billing", "mountPath": "/etc/llmroute/keys/billing"},
            {"name": "scratch", "mountPath": "/tmp"},
        ],
    }
    container.update(container_overrides)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "gw-litellm-abc",
            "namespace": "ns",
            "uid": "0b6c8a4e-1111-2222-3333-444455556666",
            "labels": {
                "app.kubernetes.io/managed-by": "llmroute",
                "app.kubernetes.io/component": "proxy",
            },
        },
        "spec": {
            "containers": [container],
            "terminationGracePeriodSeconds": 15,
            "volumes": [
                {"name": "config", "configMap": {"name": "gw-litellm"}},
                {
                    "name": "caller-billing",
                    "secret": {
                        "secretName": "billing-key",
                        "items": [{"key": "token", "path": "key"}],
                        "defaultMode": 0o400,
                    },
                },
                {"name": "scratch", "emptyDir": {}},
            ],
        },
        "status": {"phase": "Running", "podIP": "127.0.1.9"},
    }


SECRETS = {
    "provider-keys": secret("provider-keys", openai="sk-openai-value"),
    "billing-key": secret("billing-key", token="caller-key-1", unused="x"),
}
CONFIGMAPS = {
    "gw-litellm": configmap(
        "gw-litellm", **{"config.yaml": "model_list: []\n", "llmroute_auth.py": "# auth\n"}
    ),
    "settings": configmap("settings", level="INFO", region="eu"),
}


def plan(pod: dict | None = None, secrets=SECRETS, configmaps=CONFIGMAPS):
    return plan_proxy_launch(
        pod or proxy_pod(),
        secrets=secrets,
        configmaps=configmaps,
        pod_dir=POD_DIR,
        litellm=LITELLM,
        base_env=BASE_ENV,
    )


def test_argv_runs_litellm_at_the_pod_ip_with_the_pods_args() -> None:
    launch = plan()
    assert launch.argv == (
        str(LITELLM),
        "--config",
        f"{POD_DIR}/etc/litellm/config.yaml",
        "--port",
        "4000",
        "--num_workers",
        "2",
        "--host",
        "127.0.1.9",
    )
    assert (launch.host, launch.port) == ("127.0.1.9", 4000)
    assert launch.url == "http://127.0.1.9:4000"
    assert launch.health_url == "http://127.0.1.9:4000/health/liveliness"
    assert launch.cwd == POD_DIR / "etc/litellm"
    assert launch.grace_seconds == 15


def test_env_is_resolved_like_the_kubelet() -> None:
    env = plan().env
    assert env["OPENAI_API_KEY"] == "sk-openai-value"
    assert "MAYBE_KEY" not in env
    assert env["LOG_LEVEL"] == "INFO"
    assert env["CFG_level"] == "INFO"
    assert env["CFG_region"] == "eu"
    assert env["POD_NAME"] == "gw-litellm-abc"
    assert env["GREETING"] == "hi-gw-litellm-abc-$(literal)-$(UNDEFINED)"
    assert env["CPU_LIMIT"] == "2"  # 1500m rounded up, as the kubelet does
    # What the stand-in adds: the base environment, the config dir on PYTHONPATH (the
    # custom_auth module ships in the ConfigMap), the offline price map, the keys dir, and
    # temp files in the pod's own /tmp volume.
    assert env["PATH"] == BASE_ENV["PATH"]
    assert env["PYTHONPATH"] == str(POD_DIR / "etc/litellm")
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env[KEYS_DIR_ENV] == str(POD_DIR / "etc/llmroute/keys")
    assert env["TMPDIR"] == str(POD_DIR / "tmp")


def test_files_follow_the_mounts() -> None:
    launch = plan()
    assert launch.files == {
        POD_DIR / "etc/litellm/config.yaml": FileContent(b"model_list: []\n", 0o644),
        POD_DIR / "etc/litellm/llmroute_auth.py": FileContent(b"# auth\n", 0o644),
        POD_DIR / "etc/llmroute/keys/billing/key": FileContent(b"caller-key-1", 0o400),
    }
    assert set(launch.dirs) == {
        POD_DIR / "etc/litellm",
        POD_DIR / "etc/llmroute/keys/billing",
        POD_DIR / "tmp",
    }
    assert launch.mounts["/etc/litellm"] == POD_DIR / "etc/litellm"


def test_env_paths_under_a_mount_are_rewritten() -> None:
    pod = proxy_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": KEYS_DIR_ENV, "value": "/etc/llmroute/keys"},
        {"name": "CONFIG_FILE_PATH", "value": "/etc/litellm/config.yaml"},
        {"name": "ELSEWHERE", "value": "/var/lib/thing"},
        {"name": "PYTHONPATH", "value": "/etc/litellm/extra:/opt/lib"},
    ]
    env = plan(pod).env
    # /etc/llmroute/keys itself is no mount but leads to one (keys/billing): it is local too.
    assert env[KEYS_DIR_ENV] == str(POD_DIR / "etc/llmroute/keys")
    assert env["CONFIG_FILE_PATH"] == f"{POD_DIR}/etc/litellm/config.yaml"
    assert env["ELSEWHERE"] == "/var/lib/thing"
    assert env["PYTHONPATH"] == f"{POD_DIR}/etc/litellm:{POD_DIR}/etc/litellm/extra:/opt/lib"


def test_keys_dir_mounted_whole() -> None:
    pod = proxy_pod()
    pod["spec"]["containers"][0]["volumeMounts"][1]["mountPath"] = "/etc/llmroute/keys"
    pod["spec"]["containers"][0]["env"] = [{"name": KEYS_DIR_ENV, "value": "/etc/llmroute/keys"}]
    assert plan(pod).env[KEYS_DIR_ENV] == str(POD_DIR / "etc/llmroute/keys")


def test_no_keys_dir_without_a_keys_mount() -> None:
    pod = proxy_pod()
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    pod["spec"]["containers"][0]["volumeMounts"] = [mounts[0]]
    assert KEYS_DIR_ENV not in plan(pod).env


def test_host_flag_is_replaced_and_port_defaults_to_the_container_port() -> None:
    launch = plan(proxy_pod(args=["--host=0.0.0.0", "--config=/etc/litellm/config.yaml"]))
    assert launch.argv[1:] == (
        "--host=127.0.1.9",
        f"--config={POD_DIR}/etc/litellm/config.yaml",
        "--port",
        "4000",
    )
    custom = plan(proxy_pod(args=["--config", "/etc/litellm/config.yaml"], ports=[]))
    assert custom.port == 4000
    other = plan(proxy_pod(args=[], ports=[{"containerPort": 8080}]))
    assert other.argv[-2:] == ("--port", "8080")
    assert other.cwd == POD_DIR


def test_command_litellm_is_the_venv_script() -> None:
    launch = plan(proxy_pod(command=["/usr/local/bin/litellm", "--detailed_debug"]))
    assert launch.argv[:2] == (str(LITELLM), "--detailed_debug")
    with pytest.raises(UnsupportedPod):
        plan(proxy_pod(command=["sh", "-c", "litellm"]))


def test_command_python_is_the_venv_interpreter() -> None:
    launch = plan(proxy_pod(command=["python3", "-m", "llmroute_proxy_workers"]))
    assert launch.argv[:5] == (
        str(LITELLM.parent / "python"),
        "-m",
        "llmroute_proxy_workers",
        "--config",
        f"{POD_DIR}/etc/litellm/config.yaml",
    )
    assert launch.argv[-2:] == ("--host", "127.0.1.9")
    # The launcher is imported from the config directory, as in the pod (PYTHONPATH).
    assert launch.env["PYTHONPATH"] == str(POD_DIR / "etc/litellm")


@pytest.mark.parametrize(
    ("secrets", "configmaps", "message"),
    [
        ({"billing-key": SECRETS["billing-key"]}, CONFIGMAPS, 'secret "provider-keys"'),
        (
            {**SECRETS, "provider-keys": secret("provider-keys", other="x")},
            CONFIGMAPS,
            "couldn't find key openai",
        ),
        (SECRETS, {"settings": CONFIGMAPS["settings"]}, 'configmap "gw-litellm"'),
        (
            {**SECRETS, "billing-key": secret("billing-key", other="x")},
            CONFIGMAPS,
            "couldn't find key token in Secret billing-key",
        ),
    ],
)
def test_missing_references_wait(secrets, configmaps, message) -> None:
    with pytest.raises(PodNotReady, match=message):
        plan(secrets=secrets, configmaps=configmaps)


def test_projected_volume_and_subpath() -> None:
    pod = proxy_pod()
    container = pod["spec"]["containers"][0]
    container["volumeMounts"] = [
        {"name": "keys", "mountPath": "/etc/llmroute/keys"},
        {"name": "config", "mountPath": "/app/config.yaml", "subPath": "config.yaml"},
        {"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
    ]
    pod["spec"]["volumes"] = [
        {
            "name": "keys",
            "projected": {
                "defaultMode": 0o440,
                "sources": [
                    {"secret": {"name": "billing-key", "items": [{"key": "token", "path": "a"}]}},
                    {"secret": {"name": "gone", "optional": True}},
                    {"configMap": {"name": "settings", "items": [{"key": "region", "path": "r"}]}},
                ],
            },
        },
        {"name": "config", "configMap": {"name": "gw-litellm"}},
        {
            "name": "sa",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ]
            },
        },
    ]
    container["args"] = ["--config", "/app/config.yaml"]
    launch = plan(pod)
    keys = POD_DIR / "etc/llmroute/keys"
    sa = POD_DIR / "var/run/secrets/kubernetes.io/serviceaccount"
    assert launch.files == {
        keys / "a": FileContent(b"caller-key-1", 0o440),
        keys / "r": FileContent(b"eu", 0o440),
        POD_DIR / "app/config.yaml": FileContent(b"model_list: []\n", 0o644),
        sa / "namespace": FileContent(b"ns", 0o644),
    }
    assert launch.argv[1:3] == ("--config", f"{POD_DIR}/app/config.yaml")
    assert launch.env[KEYS_DIR_ENV] == str(keys)


def test_pod_references() -> None:
    pod = proxy_pod()
    pod["spec"]["volumes"].append(
        {"name": "p", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}
    )
    assert pod_references(pod) == (
        {"provider-keys", "absent", "billing-key"},
        {"settings", "gw-litellm", "kube-root-ca.crt"},
    )


def test_which_pods_the_runner_serves() -> None:
    pod = proxy_pod()
    assert pod_component(pod) == "proxy"
    assert pod_is_running(pod)
    assert not pod_is_running({**pod, "status": {"phase": "Pending"}})
    assert not pod_is_running({**pod, "status": {"phase": "Running"}})
    deleting = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert not pod_is_running(deleting)
    other = {**pod, "metadata": {**pod["metadata"], "labels": {}}}
    assert pod_component(other) is None


def rendered_ollama_pod(models: list[str], host: str = "127.0.1.20") -> dict:
    """The pod the StatefulSet controller makes from the rendered Ollama template."""
    route = {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {
            "models": [{"name": "local", "targets": [{"provider": "ollama", "model": models[0]}]}],
            "ollama": {"models": models},
        },
    }
    (statefulset,) = [o for o in render_manifest(route).objects if o["kind"] == "StatefulSet"]
    template = copy.deepcopy(statefulset["spec"]["template"])
    claim = statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    template["spec"]["volumes"].append(
        {"name": claim, "persistentVolumeClaim": {"claimName": f"{claim}-gw-ollama-0"}}
    )
    template["metadata"].update(name="gw-ollama-0", namespace="ns", uid="u")
    template["status"] = {"phase": "Running", "podIP": host}
    return template


def test_plan_ollama_launch_runs_the_pods_command_with_its_volume_as_the_store() -> None:
    pod = rendered_ollama_pod(["llama3.2", "qwen2.5"])
    assert pod_component(pod) == "ollama"
    pod_dir = Path("/w/pods/ns_gw-ollama-0_u")
    ollama = Path("/tools/ollama-v0/ollama")
    launch = plan_ollama_launch(pod, pod_dir=pod_dir, volumes_dir=Path("/w/volumes"), ollama=ollama)
    (container,) = pod["spec"]["containers"]
    # The pull script of the pod spec, as written, by the shell.
    assert launch.argv == ("/bin/sh", *container["command"][1:])
    assert (launch.host, launch.port) == ("127.0.1.20", 11434)
    store = Path("/w/volumes/ns_models-gw-ollama-0")
    assert launch.claims == {"models-gw-ollama-0": store}
    env = launch.env
    assert env["OLLAMA_HOST"] == "127.0.1.20:11434"
    assert env["OLLAMA_MODELS"] == str(store)
    assert env["HOME"] == str(pod_dir / "tmp")
    assert env["LLMROUTE_OLLAMA_MODELS"] == "llama3.2 qwen2.5"
    assert env["LLMROUTE_OLLAMA_READY_FILE"] == str(pod_dir / "tmp/llmroute/ready")
    assert env["LLMROUTE_TERMINATION_LOG"] == str(pod_dir / "dev/termination-log")
    assert env["PATH"].split(os.pathsep)[0] == str(ollama.parent)
    assert launch.readiness_argv == ("test", "-f", str(pod_dir / "tmp/llmroute/ready"))
    assert launch.fallback_to_logs
    assert launch.image.startswith("docker.io/ollama/ollama:")
    assert store in launch.dirs and pod_dir / "tmp" in launch.dirs
    assert pod_dir / "models" not in launch.dirs


def test_plan_ollama_launch_without_a_command_serves() -> None:
    pod = rendered_ollama_pod(["llama3.2"])
    (container,) = pod["spec"]["containers"]
    del container["command"]
    ollama = Path("/tools/ollama")
    launch = plan_ollama_launch(pod, pod_dir=Path("/p"), volumes_dir=Path("/v"), ollama=ollama)
    assert launch.argv == ("/tools/ollama", "serve")
    container["command"] = ["python", "-m", "http.server"]
    with pytest.raises(UnsupportedPod):
        plan_ollama_launch(pod, pod_dir=Path("/p"), volumes_dir=Path("/v"), ollama=ollama)
    with pytest.raises(PodNotReady):
        plan_ollama_launch(
            {**pod, "status": {"phase": "Pending"}},
            pod_dir=Path("/p"),
            volumes_dir=Path("/v"),
            ollama=ollama,
        )


def test_ollama_container_status_as_a_kubelet_reports_it() -> None:
    pod = {
        "metadata": {"name": "gw-ollama-0"},
        "spec": {"containers": [{"name": "ollama", "image": "img"}]},
        "status": {},
    }
    common = {"container": "ollama", "started_at": "t0"}
    running = pod_status_patch(pod, ready=False, restarts=0, running=True, last_exit=None, **common)
    assert running is not None
    (status,) = running["status"]["containerStatuses"]
    assert status["state"] == {"running": {"startedAt": "t0"}}
    assert "lastState" not in status
    assert {c["type"]: c["status"] for c in running["status"]["conditions"]} == {
        "Ready": "False",
        "ContainersReady": "False",
    }
    failed = pod_status_patch(
        pod,
        ready=False,
        restarts=2,
        running=False,
        last_exit=1,
        last_message="cannot pull x",
        **common,
    )
    assert failed is not None
    (status,) = failed["status"]["containerStatuses"]
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["message"] == "cannot pull x"
    assert status["restartCount"] == 2
    # A pod that says it already gets no second patch; a new message is a change.
    said = {**pod, "status": failed["status"]}
    assert (
        pod_status_patch(
            said,
            ready=False,
            restarts=2,
            running=False,
            last_exit=1,
            last_message="cannot pull x",
            **common,
        )
        is None
    )
    assert pod_status_patch(
        said, ready=False, restarts=2, running=False, last_exit=1, last_message="y", **common
    )
    ready = pod_status_patch(pod, ready=True, restarts=2, running=True, last_exit=None, **common)
    assert ready is not None
    assert {c["status"] for c in ready["status"]["conditions"]} == {"True"}


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("500m", "0.5"), ("2", "2"), ("1Gi", str(2**30)), ("1e3", "1000"), ("1.5k", "1500")],
)
def test_parse_quantity(quantity: str, value: str) -> None:
    assert parse_quantity(quantity) == Decimal(value)


def test_sync_files_writes_updates_and_prunes(tmp_path: Path) -> None:
    a, b = tmp_path / "v/a", tmp_path / "v/sub/b"
    written, changed = sync_files(
        {a: FileContent(b"1"), b: FileContent(b"2", 0o400)}, [tmp_path / "empty"]
    )
    assert changed and written == {a, b}
    assert a.read_bytes() == b"1"
    assert b.stat().st_mode & 0o777 == 0o400
    assert (tmp_path / "empty").is_dir()
    _, changed = sync_files({a: FileContent(b"1"), b: FileContent(b"2", 0o400)}, [], written)
    assert not changed
    written, changed = sync_files({a: FileContent(b"rotated")}, [], written)
    assert changed and written == {a}
    assert a.read_bytes() == b"rotated"
    assert not b.exists()
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["a", "sub"]  # no temp files


# -- one real proxy, started the way the runner starts it -------------------------------------

AUTH_MODULE = textwrap.dedent(
    '''
    """Accepts the caller key found in $LLMROUTE_KEYS_DIR/caller/key (read per request)."""
    import os
    from pathlib import Path

    from fastapi import Request
    from litellm.proxy._types import UserAPIKeyAuth


    async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
        keys_dir = Path(os.environ["LLMROUTE_KEYS_DIR"])
        if api_key != (keys_dir / "caller" / "key").read_text().strip():
            raise Exception("unknown key")
        return UserAPIKeyAuth(api_key=api_key, key_alias="caller")
    '''
)


def free_loopback_address() -> tuple[str, int]:
    host = f"127.0.1.{random.randint(200, 250)}"
    with socket.socket() as sock:
        sock.bind((host, 0))
        return host, sock.getsockname()[1]


def test_launch_serves_a_real_litellm_proxy(tmp_path: Path) -> None:
    host, port = free_loopback_address()
    with FakeOpenAI(required_key="sk-upstream") as upstream:
        config = {
            "model_list": [
                {
                    "model_name": "smart",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": upstream.api_base,
                        "api_key": "os.environ/OPENAI_API_KEY",
                    },
                }
            ],
            # litellm refuses to start without a master key, custom_auth or not.
            "general_settings": {
                "master_key": "os.environ/LITELLM_MASTER_KEY",
                "custom_auth": "smoke_auth.user_api_key_auth",
            },
        }
        pod = proxy_pod(
            args=["--config", "/etc/litellm/config.yaml", "--port", str(port)],
            env=[
                {
                    "name": "OPENAI_API_KEY",
                    "valueFrom": {"secretKeyRef": {"name": "provider-keys", "key": "openai"}},
                },
                {
                    "name": "LITELLM_MASTER_KEY",
                    "valueFrom": {"secretKeyRef": {"name": "master", "key": "masterKey"}},
                },
            ],
            envFrom=[],
            volumeMounts=[
                {"name": "config", "mountPath": "/etc/litellm"},
                {"name": "caller", "mountPath": "/etc/llmroute/keys/caller"},
            ],
        )
        pod["status"]["podIP"] = host
        pod["spec"]["volumes"] = [
            {"name": "config", "configMap": {"name": "gw-litellm"}},
            {"name": "caller", "secret": {"secretName": "caller-key"}},
        ]
        secrets = {
            "provider-keys": secret("provider-keys", openai="sk-upstream"),
            "caller-key": secret("caller-key", key="sk-caller-1"),
            "master": secret("master", masterKey="sk-master-0123456789abcdef"),
        }
        configmaps = {
            "gw-litellm": configmap(
                "gw-litellm",
                **{"config.yaml": yaml.safe_dump(config), "smoke_auth.py": AUTH_MODULE},
            )
        }
        launch = plan_proxy_launch(
            pod, secrets=secrets, configmaps=configmaps, pod_dir=tmp_path / "pod"
        )
        with launch_proxy(launch, tmp_path / "proxy.log") as proxy:
            wait_http_ok(launch.health_url, 90, process=proxy)

            client = openai.OpenAI(base_url=launch.url, api_key="sk-caller-1", max_retries=0)
            answer = client.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "hello"}]
            )
            assert "fake-openai" in answer.choices[0].message.content
            [forwarded] = upstream.inference_requests()
            assert forwarded.api_key == "sk-upstream"  # resolved from the Secret

            # A rotated Secret reaches the volume as the runner's refresh writes it.
            secrets["caller-key"] = secret("caller-key", key="sk-caller-2")
            rotated = plan_proxy_launch(
                pod, secrets=secrets, configmaps=configmaps, pod_dir=tmp_path / "pod"
            )
            sync_files(rotated.files, rotated.dirs, launch.files)
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(model="smart", messages=[])
            client = client.with_options(api_key="sk-caller-2")
            assert client.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "again"}]
            ).choices
        assert not proxy.alive


# -- the runner's loop, against pods given as dicts and a stand-in litellm ---------------------

STAND_IN_LITELLM = """\
#!{python}
# Serves /health/liveliness at --host/--port, like the proxy; records how it was started.
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

args = sys.argv[1:]
host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


HTTPServer((host, port), Handler).serve_forever()
"""


class DictRunner(ProcessRunner):
    """The runner with the API server's answers given as dicts (the loop is what is tested)."""

    def __init__(self, workdir: Path, **kwargs) -> None:
        litellm = workdir / "bin" / "litellm"
        litellm.parent.mkdir(parents=True)
        litellm.write_text(STAND_IN_LITELLM.format(python=sys.executable))
        litellm.chmod(0o755)
        super().__init__(
            api_client=object(), workdir=workdir, poll_interval=0.05, litellm=litellm, **kwargs
        )
        self.pods: list[dict] = []
        self.objects: dict[tuple[str, str], dict] = {}

    def _list_pods(self) -> list[dict]:
        return copy.deepcopy(self.pods)

    def _read(self, kind: str, namespace: str, name: str) -> dict | None:
        return copy.deepcopy(self.objects.get((kind, name)))


def loop_pod(name: str, host: str, port: int, uid: str | None = None) -> dict:
    pod = proxy_pod(args=["--config", "/etc/litellm/config.yaml", "--port", str(port)])
    pod["metadata"].update(name=name, uid=uid or f"uid-{name}")
    pod["status"]["podIP"] = host
    return pod


@pytest.fixture
def dict_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DictRunner]:
    # The e2e session may have named a log directory for every runner of the process.
    monkeypatch.delenv(DictRunner.LOG_DIR_ENV, raising=False)
    runner = DictRunner(tmp_path)
    runner.objects = {("Secret", n): o for n, o in SECRETS.items()}
    runner.objects.update({("ConfigMap", n): o for n, o in CONFIGMAPS.items()})
    with runner:
        yield runner


def served(info) -> dict:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(info.url) as r:
        return json.loads(r.read())


def test_runner_follows_pods(dict_runner: DictRunner) -> None:
    host, port = free_loopback_address()
    dict_runner.pods = [loop_pod("gw-a", host, port)]
    info = dict_runner.wait_serving("gw-a", timeout=20)
    assert (info.host, info.port, info.state) == (host, port, "running")
    assert info.log_path == dict_runner.workdir / "logs/ns_gw-a.log"
    started = served(info)
    assert started["argv"][-2:] == ["--host", host]
    assert started["env"]["OPENAI_API_KEY"] == "sk-openai-value"
    assert Path(started["cwd"]) == info.pod_dir / "etc/litellm"
    assert (info.pod_dir / "etc/llmroute/keys/billing/key").read_text() == "caller-key-1"

    # A Secret change reaches the volume; the process keeps running.
    dict_runner.objects[("Secret", "billing-key")] = secret("billing-key", token="caller-key-2")
    key_file = info.pod_dir / "etc/llmroute/keys/billing/key"
    wait_for(lambda: key_file.read_text() == "caller-key-2", timeout=10, what="rotated key")
    assert dict_runner.process("gw-a").pid == info.pid

    # A process that dies is restarted, like a container.
    os.killpg(info.pid, signal.SIGKILL)
    restarted = wait_for(
        lambda: (
            (i := dict_runner.process("gw-a")) and i.restarts == 1 and i.state == "running" and i
        ),
        timeout=20,
        what="a restart",
    )
    assert restarted.pid != info.pid
    dict_runner.wait_serving("gw-a", timeout=20)

    # A deleted pod's process stops and its directory goes.
    dict_runner.pods = []
    dict_runner.wait_stopped("gw-a", timeout=20)
    assert not Path(f"/proc/{restarted.pid}").exists()
    assert not info.pod_dir.exists()
    assert "exited with" in info.log_path.read_text()


def test_runner_waits_for_missing_secrets(dict_runner: DictRunner) -> None:
    host, port = free_loopback_address()
    del dict_runner.objects[("Secret", "provider-keys")]
    dict_runner.pods = [loop_pod("gw-b", host, port)]
    waiting = wait_for(lambda: dict_runner.process("gw-b"), timeout=10, what="an entry")
    wait_for(
        lambda: "provider-keys" in dict_runner.process("gw-b").reason, timeout=10, what="reason"
    )
    assert waiting.pid is None
    dict_runner.objects[("Secret", "provider-keys")] = SECRETS["provider-keys"]
    assert dict_runner.wait_serving("gw-b", timeout=20).pid is not None


def test_runner_swaps_processes_on_rollout_and_stop_ends_all(tmp_path: Path) -> None:
    runner = DictRunner(tmp_path)
    runner.objects = {("Secret", n): o for n, o in SECRETS.items()}
    runner.objects.update({("ConfigMap", n): o for n, o in CONFIGMAPS.items()})
    host, port = free_loopback_address()
    with runner:
        runner.pods = [loop_pod("gw-old", host, port)]
        old = runner.wait_serving("gw-old", timeout=20)
        # The new pod may even get the old one's IP: it starts once the old process is gone.
        runner.pods = [loop_pod("gw-new", host, port)]
        new = runner.wait_serving("gw-new", timeout=20)
        assert not Path(f"/proc/{old.pid}").exists()
        assert [p.pod for p in runner.processes()] == ["gw-new"]
    assert not Path(f"/proc/{new.pid}").exists()
    assert not tmp_path.joinpath("pods", new.pod_dir.name).exists()


# No registry is reachable: a model named with a loopback host whose port nothing listens on
# fails to pull at once, without a DNS lookup or a packet leaving the machine.
UNPULLABLE_MODEL = "127.0.0.1:9/library/absent:latest"


class StatusRecordingRunner(DictRunner):
    """Keeps the pod status patches the runner sends, as the API server would merge them."""

    def __init__(self, workdir: Path, **kwargs) -> None:
        super().__init__(workdir, **kwargs)
        self.statuses: dict[str, list[dict]] = {}

    def _patch_pod_status(self, namespace: str, name: str, patch: dict) -> None:
        self.statuses.setdefault(name, []).append(copy.deepcopy(patch["status"]))

    def last_status(self, pod: str) -> dict | None:
        return (self.statuses.get(pod) or [None])[-1]


def is_ready(status: dict | None) -> bool:
    return (
        bool(status) and {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    )


def api_json(url: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        request, timeout=60
    ) as response:
        return json.loads(response.read())


def test_runner_serves_the_real_ollama_with_models_kept_on_the_volume(tmp_path: Path) -> None:
    require_tools("ollama")
    host, _ = free_loopback_address()
    runner = StatusRecordingRunner(tmp_path, ollama_models=["llama3.2"])

    def pod(uid: str, models: list[str]) -> dict:
        pod = rendered_ollama_pod(models, host=host)
        pod["metadata"]["uid"] = uid
        return pod

    with runner:
        runner.pods = [pod("first", ["llama3.2"])]
        info = runner.wait_serving("gw-ollama-0", timeout=30)
        assert info.url == f"http://{host}:11434"
        # The pull script found the model on the volume; the readiness probe passes.
        wait_for(lambda: is_ready(runner.last_status("gw-ollama-0")), timeout=30, what="Ready")
        tags = api_json(f"{info.url}/api/tags")
        assert [m["name"] for m in tags["models"]] == ["llama3.2:latest"]
        answer = api_json(
            f"{info.url}/api/chat",
            {
                "model": "llama3.2",
                "messages": [{"role": "user", "content": "Hello"}],
                "stream": False,
            },
        )
        assert answer["done_reason"] == "length"
        assert answer["message"]["content"].strip()
        assert "is on the volume" in runner.log("gw-ollama-0")

        # The StatefulSet recreates the pod (new uid) on the same claim: the model is still
        # there, and a model declared since is pulled -- which fails, with no registry here.
        first_pod_reports = len(runner.statuses["gw-ollama-0"])
        runner.pods = [pod("second", ["llama3.2", UNPULLABLE_MODEL])]
        failed = wait_for(
            lambda: (
                (i := runner.process("gw-ollama-0"))
                and i.uid == "second"
                and (status := runner.last_status("gw-ollama-0"))
                and "waiting" in status["containerStatuses"][0]["state"]
                and status
            ),
            timeout=30,
            what="the pod's container failing its pull",
        )
        (container,) = failed["containerStatuses"]
        assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        terminated = container["lastState"]["terminated"]
        assert terminated["exitCode"] == 1
        assert f"cannot pull {UNPULLABLE_MODEL}" in terminated["message"]
        log_text = runner.log("gw-ollama-0")
        assert "llama3.2 is on the volume" in log_text
        # Ollama's own error is in the container's log.
        assert "Error: pull model manifest" in log_text
        second_pod_reports = runner.statuses["gw-ollama-0"][first_pod_reports:]
        assert second_pod_reports
        assert not any(map(is_ready, second_pod_reports)), "a pod missing a model is never Ready"
