"""localcluster: a local Kubernetes whose llmroute pods really serve, for the tests, the
benchmarks and the demo.

Real upstream binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)
run as processes on this machine; a process runner plays the kubelet for llmroute's pods and
starts the real litellm proxy of each proxy pod. It knows llmroute only by what the operator
writes to the cluster (labels, pod specs, ConfigMaps): it imports nothing of llmroute, and
the operator never imports it.

The public surface, by what it is for (the name, then the module it comes from):

  LocalCluster, FAKE_NODE       controlplane  start and stop a control plane, and its one
                                              node; its kubeconfig and admin credentials
  prebound_volume               controlplane  a PersistentVolume bound to a claim in
                                              advance (no provisioner runs here)
  free_port                     controlplane  a free TCP port on loopback for whatever a
                                              test starts
  ProcessRunner, ProcessInfo    runner        the kubelet stand-in: runs the processes of
                                              llmroute's pods as their specs say and owns
                                              their Ready condition
  ProxyLaunch, ManagedProcess,  runner        one proxy process from a rendered pod, without
  plan_proxy_launch,                          a cluster (the gateway benchmark)
  launch_proxy, wait_http_ok
  FakeOpenAI, FakeAnthropic,    fakes         upstream LLM providers speaking their wire
  Behaviour                                   formats, the only fakes of the e2e suite;
                                              Behaviour scripts their failures
  tinymodel                     tinymodel     the tiny local model the real Ollama serves:
                                              write it, create it in a model store, serve it
  wait_for                      wait          poll a condition until a deadline, never a
                                              bare sleep
  DockerEngine,                 docker        a Docker engine for building and running the
  DockerUnavailable                           operator image, started when none answers
  tools                         tools         where the pinned binaries are (built by
                                              hack/build-tools.sh), and which are missing
  prometheus                    prometheus    a real Prometheus that discovers the proxy pods
                                              through the API server and scrapes them and
                                              the operator (LocalPrometheus)

Names are imported on first use, so `python -m localcluster.fakes` (the fakes on their own),
`python -m localcluster.runner` (the runner against any kubeconfig) and
`python -m localcluster.demo` (hack/demo.sh) load only what they run. The modules hold more
than this surface; their own tests use it, nothing else should.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it.
_DEFINED_IN: dict[str, str] = {
    "LocalCluster": "controlplane",
    "FAKE_NODE": "controlplane",
    "free_port": "controlplane",
    "prebound_volume": "controlplane",
    "ProcessRunner": "runner",
    "ProcessInfo": "runner",
    "ProxyLaunch": "runner",
    "ManagedProcess": "runner",
    "plan_proxy_launch": "runner",
    "launch_proxy": "runner",
    "wait_http_ok": "runner",
    "FakeOpenAI": "fakes",
    "FakeAnthropic": "fakes",
    "Behaviour": "fakes",
    "wait_for": "wait",
    "DockerEngine": "docker",
    "DockerUnavailable": "docker",
}

_MODULES = ("tools", "tinymodel", "prometheus")  # public modules of their own

__all__ = [*_DEFINED_IN, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _DEFINED_IN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_DEFINED_IN[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
