"""The local demo: a cluster whose pods serve, the operator, and the example route.

`up` starts a supervisor in the background and returns once the route is Ready;
`down` stops the supervisor, which stops everything it started. Upstream providers are
the fakes in fakes.py, unless ANTHROPIC_API_KEY / OPENAI_API_KEY are set: then the real
provider is called with that key. The fakes fail (500 and 429), so the example's `smart`
model falls back to the route's own Ollama: the real server, answering from the tiny local
model (localcluster.tinymodel) that its volume holds, as if pulled earlier.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from kubernetes import client

from . import podnet, tools
from . import prometheus as local_prometheus
from .controlplane import LocalCluster, free_port, prebound_volume
from .fakes import Behaviour, FakeAnthropic, FakeOpenAI
from .runner import ProcessRunner
from .wait import wait_for

STATE_DIR = Path(os.environ.get("LLMROUTE_DEMO_DIR", Path.home() / ".cache/llmroute/demo"))
EXAMPLE = tools.REPO_ROOT / "examples/smart-chain.yaml"
NAMESPACE = "demo"
PROVIDER_KEYS = "provider-keys"
# The fakes fail so that a request shows the fallback down to the local model.
FAKE_FAILURES = {"anthropic": Behaviour.ERROR500, "openai": Behaviour.RATELIMIT429}


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _pid() -> int | None:
    try:
        pid = int((STATE_DIR / "supervisor.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def up() -> int:
    if _pid() is not None:
        say("already running")
        print((STATE_DIR / "ready.txt").read_text())
        return 0
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "ready.txt").unlink(missing_ok=True)
    log_path = STATE_DIR / "supervisor.log"
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "localcluster.demo", "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command until `down`
        )
    (STATE_DIR / "supervisor.pid").write_text(str(supervisor.pid))
    shown = 0
    while not (STATE_DIR / "ready.txt").exists():
        lines = log_path.read_text(errors="replace").splitlines()
        for line in lines[shown:]:
            if line.startswith("[demo]"):
                print(line, flush=True)
        shown = len(lines)
        if supervisor.poll() is not None:
            print("\n".join(lines[-40:]))
            say(f"failed; the whole log is {log_path}")
            return 1
        time.sleep(0.5)
    print((STATE_DIR / "ready.txt").read_text())
    return 0


def down() -> int:
    pid = _pid()
    if pid is None:
        say("not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    (STATE_DIR / "supervisor.pid").unlink(missing_ok=True)
    say("stopped")
    return 0


def _route_for_demo(route: dict, fakes: dict[str, str]) -> dict:
    """The example, with each provider that has no real key pointed at its fake."""
    for model in route["spec"]["models"]:
        for target in model["targets"]:
            if target["provider"] in fakes:
                target["apiBase"] = fakes[target["provider"]]
    route["spec"].get("proxy", {}).pop("resources", None)
    # No provisioner runs here: the model volume is bound to a volume made by the demo.
    route["spec"]["ollama"]["storage"] = {"size": "5Gi", "storageClassName": ""}
    return route


def _ollama_at(route: dict, url: str) -> dict:
    """The route's managed-Ollama targets pointed at the Ollama pod's address: no DNS
    serves the headless Service's name here."""
    for model in route["spec"]["models"]:
        for target in model["targets"]:
            if target["provider"] == "ollama" and "apiBase" not in target:
                target["apiBase"] = url
    return {"spec": {"models": route["spec"]["models"]}}


def serve() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # A cluster starts empty: the etcd data and pod directories of a previous run (after
    # `down`, or a crash) would make every create below answer 409.
    for leftover in ("cluster", "runner"):
        shutil.rmtree(STATE_DIR / leftover, ignore_errors=True)
    with contextlib.ExitStack() as stack:
        say("starting the local control plane (etcd, kube-apiserver, controllers, kwok)")
        cluster = stack.enter_context(LocalCluster(workdir=STATE_DIR / "cluster"))
        if cluster.network is None:
            say(f"no pod network ({podnet.unavailable_reason()}): pods get loopback addresses")
        else:
            say(f"pods in network namespaces on {cluster.network.bridge} ({cluster.pod_cidr})")
            if not cluster.services:
                say(f"no Services or NetworkPolicies (why: {STATE_DIR / 'supervisor.log'})")
        api = cluster.api_client()
        core = client.CoreV1Api(api)

        fakes: dict[str, str] = {}
        keys = {}
        for provider, env, fake_class in (
            ("anthropic", "ANTHROPIC_API_KEY", FakeAnthropic),
            ("openai", "OPENAI_API_KEY", FakeOpenAI),
        ):
            if os.environ.get(env):
                keys[provider] = os.environ[env]
                say(f"{provider}: the real API, with the key from ${env}")
            else:
                fake = fake_class(behaviour=FAKE_FAILURES[provider])
                stack.callback(fake.stop)
                fakes[provider] = fake.start()
                keys[provider] = f"fake-{provider}-key"
                say(
                    f"{provider}: a FAKE API at {fakes[provider]} answering "
                    f"{FAKE_FAILURES[provider].value} (set ${env} for the real one)"
                )
        (route,) = [
            _route_for_demo(doc, fakes)
            for doc in yaml.safe_load_all(EXAMPLE.read_text())
            if doc and doc["kind"] == "LLMRoute"
        ]
        route["spec"].pop("auth", None)  # the demo calls with the master key
        name = route["metadata"]["name"]
        local_models = route["spec"]["ollama"]["models"]

        say("starting the operator (llmroute run)")
        operator_metrics = f"127.0.0.1:{free_port()}"
        operator_log = (STATE_DIR / "operator.log").open("ab")
        stack.callback(operator_log.close)
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmroute",
                "run",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--liveness",
                f"http://127.0.0.1:{free_port()}/healthz",
                "--metrics",
                operator_metrics,
            ],
            stdout=operator_log,
            stderr=subprocess.STDOUT,
        )

        def stop_operator() -> None:
            operator.terminate()
            operator.wait(30)

        stack.callback(stop_operator)
        say(
            "starting the process runner (the real litellm proxy for each proxy pod, the real "
            f"Ollama for the Ollama pod, its volume holding {', '.join(local_models)})"
        )
        runner = stack.enter_context(
            ProcessRunner(
                cluster.kubeconfig, workdir=STATE_DIR / "runner", ollama_models=local_models
            )
        )

        prometheus_url = _start_prometheus(stack, cluster.kubeconfig, operator_metrics)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": PROVIDER_KEYS},
                "stringData": {
                    "anthropic-api-key": keys["anthropic"],
                    "openai-api-key": keys["openai"],
                },
            },
        )
        core.create_persistent_volume(
            # <volumeClaimTemplate>-<StatefulSet>-<ordinal>
            prebound_volume(
                f"{NAMESPACE}-{name}-ollama-models", NAMESPACE, f"models-{name}-ollama-0"
            )
        )
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            "llmroute.dev", "v1alpha1", NAMESPACE, "llmroutes", route
        )
        say(f"applied LLMRoute {NAMESPACE}/{name} from {EXAMPLE.name}")
        ollama_pod = wait_for(
            lambda: (
                (p := core.read_namespaced_pod(f"{name}-ollama-0", NAMESPACE)).status.pod_ip and p
            ),
            timeout=120,
            what="the Ollama pod",
        )
        ollama_url = runner.wait_serving(ollama_pod.metadata.name, timeout=60).url
        say(f"ollama: the real Ollama serves the Ollama pod at {ollama_url}")
        custom.patch_namespaced_custom_object(
            "llmroute.dev", "v1alpha1", NAMESPACE, "llmroutes", name, _ollama_at(route, ollama_url)
        )
        say("waiting for the route to be Ready")

        def ready() -> bool:
            obj = custom.get_namespaced_custom_object(
                "llmroute.dev", "v1alpha1", NAMESPACE, "llmroutes", name
            )
            return any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in obj.get("status", {}).get("conditions", [])
            )

        wait_for(ready, timeout=180, what="the route Ready")
        pods = core.list_namespaced_pod(
            NAMESPACE, label_selector=f"llmroute.dev/route={name},app.kubernetes.io/component=proxy"
        ).items
        pod_ip = pods[0].status.pod_ip
        wait_for(lambda: _serves(pod_ip), timeout=120, what="the proxy answering")
        kubectl = f"{tools.binary('kubectl')} --kubeconfig {cluster.kubeconfig}"
        if cluster.services:
            # The Service's ClusterIP, routed by kube-proxy to the ready proxy pods.
            cluster_ip = core.read_namespaced_service(name, NAMESPACE).spec.cluster_ip
            url = f"http://{cluster_ip}:4000"
            wait_for(lambda: _serves(cluster_ip), timeout=60, what="the Service answering")
            where = f"here its Service's ClusterIP is {cluster_ip}"
        else:
            url = f"http://{pod_ip}:4000"
            where = "here (no Services on this machine) the proxy pod serves at its pod IP"
        master = core.read_namespaced_secret(f"{name}-master-key", NAMESPACE)
        sample = _ask(url, base64.b64decode(master.data["masterKey"]).decode())
        (STATE_DIR / "ready.txt").write_text(
            _instructions(kubectl, url, name, where, sample, prometheus_url)
        )
        say("ready")
        stop.wait()
        say("stopping")


def _start_prometheus(
    stack: contextlib.ExitStack, kubeconfig: Path, operator_metrics: str
) -> str | None:
    """A real Prometheus scraping the proxy pods and the operator, with the chart's alerts."""
    if local_prometheus.binary() is None:
        say(f"no Prometheus ({local_prometheus.INSTALL_HINT})")
        return None
    prometheus = local_prometheus.LocalPrometheus(
        kubeconfig,
        STATE_DIR / "prometheus",
        [operator_metrics],
        interval="15s",
        rule_files=[local_prometheus.CHART_RULES],
    )
    stack.callback(prometheus.stop)
    url = prometheus.start()
    say(f"prometheus: {url} (the proxy pods, the operator, the chart's alert rules)")
    return url


def _serves(address: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://{address}:4000/health/liveliness", timeout=2) as r:
        return r.status == 200


def _ask(url: str, key: str) -> str:
    """One request for `smart`, as the printed example makes it: who answered, and what."""
    import urllib.request

    body = {"model": "smart", "messages": [{"role": "user", "content": "Hello"}]}
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=120) as response:
        reply = json.loads(response.read())
    return f"model {reply['model']!r} answered: {reply['choices'][0]['message']['content']!r}"


def _instructions(
    kubectl: str, url: str, name: str, where: str, sample: str, prometheus_url: str | None
) -> str:
    body = json.dumps({"model": "smart", "messages": [{"role": "user", "content": "Hello"}]})
    secret = f"-n {NAMESPACE} get secret {name}-master-key -o jsonpath='{{.data.masterKey}}'"
    sdk = (
        "from openai import OpenAI; import os; "
        "c = OpenAI(base_url=os.environ['LLMROUTE_URL'], api_key=os.environ['LLMROUTE_API_KEY']); "
        "print(c.chat.completions.create(model='smart', "
        "messages=[{'role': 'user', 'content': 'Hello'}]).choices[0].message.content)"
    )
    return f"""
The gateway is Ready. In a cluster it is http://{name}.{NAMESPACE}.svc:4000;
{where}.

A request for "smart" (Claude, then GPT-4, then the local Llama on the route's Ollama):
  {sample}

  export LLMROUTE_URL={url}
  export LLMROUTE_API_KEY=$({kubectl} {secret} | base64 -d)

  curl -s $LLMROUTE_URL/v1/chat/completions -H "Authorization: Bearer $LLMROUTE_API_KEY" \\
    -H 'Content-Type: application/json' -d '{body}'

  .venv/bin/python -c "{sdk}"

  {kubectl} get llmroutes -A
  {kubectl} -n {NAMESPACE} get endpointslices

{_prometheus_lines(prometheus_url)}
Logs: {STATE_DIR}. Stop everything with: bash hack/demo.sh down
"""


def _prometheus_lines(prometheus_url: str | None) -> str:
    if prometheus_url is None:
        return f"No Prometheus here: {local_prometheus.INSTALL_HINT}.\n"
    query = "sum by (requested_model) (litellm_proxy_total_requests_metric_total)"
    return (
        f"Prometheus (proxies, operator, alerts): {prometheus_url}\n"
        f"  curl -s {prometheus_url}/api/v1/query --data-urlencode 'query={query}'\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="hack/demo.sh", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "serve"], nargs="?", default="up")
    command = parser.parse_args().command
    if command == "serve":
        serve()
        return 0
    return up() if command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
