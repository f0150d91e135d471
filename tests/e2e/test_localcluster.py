"""The local control plane itself: pods become Ready, and nothing outlives it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kubernetes import client

from localcluster import podnet
from localcluster.controlplane import LocalCluster
from localcluster.wait import wait_for


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _children_of(pids: list[int]) -> list[int]:
    """Every process whose parent is one of `pids` (found in /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().split()[3])
            except (OSError, IndexError, ValueError):
                continue
            if ppid in pids:
                found.append(int(entry))
    return found


def test_deployment_becomes_available_and_teardown_leaves_nothing(tmp_path: Path, cluster) -> None:
    # `cluster` (the session's) proves the binaries exist; this test runs its own to stop it.
    local = LocalCluster(workdir=tmp_path / "own", crd_dir=None)
    local.start()
    try:
        pids = local.pids()
        network = local.network
        assert len(pids) == (7 if local.services else 5) and all(_alive(p) for p in pids)
        with local.api_client() as api:
            apps = client.AppsV1Api(api)
            apps.create_namespaced_deployment(
                "default",
                {
                    "metadata": {"name": "web"},
                    "spec": {
                        "replicas": 2,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                        },
                    },
                },
            )
            wait_for(
                lambda: (
                    apps.read_namespaced_deployment("web", "default").status.available_replicas == 2
                ),
                what="Deployment available",
            )
            pods = client.CoreV1Api(api).list_namespaced_pod("default").items
            prefix = local.pod_cidr.rsplit(".", 1)[0] + "."
            assert all(p.status.pod_ip.startswith(prefix) for p in pods)
            if network is not None:
                # Its own pod network, beside the session cluster's.
                assert network != cluster.network
                assert Path(f"/sys/class/net/{network.bridge}").exists()
                for pod in pods:
                    podnet.add_pod(pod.status.pod_ip)  # as the runner would
    finally:
        local.stop()
    assert not [p for p in pids if _alive(p)]
    assert not [p for p in _children_of(pids) if _alive(p)]
    if network is not None:
        # Nothing of its network is left: namespaces, bridge (with its routes), guard.
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert not [
            n
            for n in namespaces.stdout.split()
            if n.startswith(podnet.NETNS_PREFIX) and network.owns(n[len(podnet.NETNS_PREFIX) :])
        ]
        assert not Path(f"/sys/class/net/{network.bridge}").exists()
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        assert network.guard_table not in tables.stdout
