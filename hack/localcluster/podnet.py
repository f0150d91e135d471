"""A pod network that stays on this machine: one bridge per cluster, one namespace per pod.

Each local cluster claims a slot S (0-15) and with it a /20 of 198.18.0.0/16 for its pods
and a /20 of 198.19.0.0/16 for its Services:

- host side: a bridge ``llmrS`` holding the gateway address 198.18.16S.1/20 (kwok's node
  IP; pods default-route through it), the Service /20 routed to that bridge (an unproxied
  ClusterIP never leaves), and an ``unreachable`` route for all of 198.18.0.0/15, so no
  packet for the harness's ranges ever takes the host's default route;
- a guard: an nftables table whose forward chain rejects anything that arrives from the
  bridge and would leave by another interface. It goes in before the bridge exists, so no
  pod ever runs without it;
- per pod: a network namespace ``llmroute-pod-<ip>`` with ``eth0`` (a veth whose MAC is
  derived from the IP: kwok reuses IPs, and a fresh random MAC on a reused IP leaves
  stale ARP entries behind, making the new pod unreachable), its address in the /20, and
  a default route via the gateway. Processes start with ``ip netns exec``; an in-process
  server opens its socket from a thread that entered the namespace.

Slots are held with a lock file for the life of the cluster, so clusters side by side
never share addresses, and the leftovers of a slot whose owner died (a crash) are removed
when the slot is claimed next. Everything needs root (CAP_NET_ADMIN); without it the
local cluster falls back to loopback pod addresses (see ``unavailable_reason``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Reserved for benchmarking (RFC 2544): never routed on the Internet, and not the host's
# own network. Pods live in the first /16, Services in the second.
HARNESS_RANGE = ipaddress.ip_network("198.18.0.0/15")
POD_RANGE = ipaddress.ip_network("198.18.0.0/16")
SERVICE_RANGE = ipaddress.ip_network("198.19.0.0/16")
SLOTS = 16  # one /20 of each range per cluster
NETNS_PREFIX = "llmroute-pod-"
BRIDGE_PREFIX = "llmr"
# Per-namespace files that `ip netns exec` mounts over /etc (ip-netns(8)).
NETNS_ETC = Path("/etc/netns")
LOCK_DIR = Path(os.environ.get("LLMROUTE_PODNET_LOCK_DIR", "/run/llmroute-podnet"))

_CLONE_NEWNET = 0x40000000


def unavailable_reason() -> str | None:
    """Why pods cannot get network namespaces here (None when they can)."""
    if os.geteuid() != 0:
        return "not running as root (network namespaces need CAP_NET_ADMIN)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install {package})"
    return None


def _run(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass
class PodNetwork:
    """One cluster's slot of the pod network (addresses, bridge, guard)."""

    slot: int
    _lock: int | None = field(default=None, repr=False)

    # -- addresses -----------------------------------------------------------------------

    @property
    def block(self) -> ipaddress.IPv4Network:
        """The pods' /20 (the bridge's subnet)."""
        return ipaddress.ip_network(f"198.18.{16 * self.slot}.0/20")

    @property
    def gateway(self) -> str:
        """The bridge's address: the node IP, the pods' default route, and where whatever
        pods call on the host (fake providers) listens."""
        return str(self.block.network_address + 1)

    @property
    def pod_cidr(self) -> str:
        """What kwok hands out (it starts at the CIDR's .1: the gateway stays outside)."""
        return f"198.18.{16 * self.slot + 1}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"198.19.{16 * self.slot}.0/20"

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.slot}"

    @property
    def guard_table(self) -> str:
        return f"llmroute_guard_{self.slot}"

    @property
    def _forward_rule(self) -> tuple[str, ...]:
        return (
            "-i", self.bridge, "-o", self.bridge,
            "-m", "comment", "--comment", f"llmroute pod network {self.slot}",
            "-j", "ACCEPT",
        )  # fmt: skip

    def owns(self, ip: str) -> bool:
        return ipaddress.ip_address(ip) in self.block

    # -- the slot ------------------------------------------------------------------------

    @classmethod
    def claim(cls) -> PodNetwork:
        """Take the first free slot, clear what a dead owner left in it, and set it up."""
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for slot in range(SLOTS):
            fd = os.open(LOCK_DIR / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            network = cls(slot, fd)
            try:
                network._remove(stale=True)
                network._set_up()
            except BaseException:
                network.release()
                raise
            return network
        raise RuntimeError(f"all {SLOTS} pod network slots are in use")

    def _set_up(self) -> None:
        # The guard first: from here on, nothing from the bridge leaves by another interface.
        _run(
            "nft",
            "-f",
            "-",
            stdin=f"""
table inet {self.guard_table} {{
  chain forward {{
    type filter hook forward priority 10; policy accept;
    iifname "{self.bridge}" oifname != "{self.bridge}" meta l4proto tcp reject with tcp reset
    iifname "{self.bridge}" oifname != "{self.bridge}" reject with icmpx type admin-prohibited
  }}
}}
""",
        )
        _run("ip", "route", "replace", "unreachable", str(HARNESS_RANGE))
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/{self.block.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        # Only the ingress interface's flag counts: traffic that a ClusterIP rewrites to
        # another pod is routed by the host, and nothing else is forwarded.
        Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/forwarding").write_text("1")
        _run("ip", "route", "add", self.service_cidr, "dev", self.bridge)
        if _has_filter_table():
            # Bridged frames go through iptables' FORWARD chain too, and Docker sets its
            # policy to DROP: traffic between this bridge's pods is let through by name.
            _run("iptables", "-A", "FORWARD", *self._forward_rule)
        log.info(
            "pod network: bridge %s at %s, pods %s, services %s",
            self.bridge,
            self.gateway,
            self.pod_cidr,
            self.service_cidr,
        )

    def release(self) -> None:
        """Remove everything of this slot (pods' namespaces, bridge, routes, guard)."""
        try:
            self._remove(stale=False)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

    def _remove(self, *, stale: bool) -> None:
        for name in _netns_names():
            ip = name[len(NETNS_PREFIX) :]
            with contextlib.suppress(ValueError):
                if self.owns(ip):
                    if stale:
                        log.info("pod network: removing stale namespace %s", name)
                    remove_pod(ip)
        # The bridge takes its address and the Service route with it.
        _run("ip", "link", "del", self.bridge, check=False)
        if _has_filter_table() and shutil.which("iptables") is not None:
            while (
                subprocess.run(
                    ["iptables", "-D", "FORWARD", *self._forward_rule], capture_output=True
                ).returncode
                == 0
            ):
                pass
        _run("nft", "delete", "table", "inet", self.guard_table, check=False)
        if not _bridges_in_use():
            _run("ip", "route", "del", "unreachable", str(HARNESS_RANGE), check=False)


# -- Services and NetworkPolicies -----------------------------------------------------------
#
# kube-proxy (its nftables table "kube-proxy") and kube-router (its KUBE-ROUTER-* chains
# and KUBE-SRC/DST-* ipsets in the host's filter table) program host-wide state under
# fixed names, so only one cluster at a time runs them: the one that holds this lock.

KUBE_ROUTER_CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
KUBE_ROUTER_IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-")


class ServiceRules:
    """The right to run kube-proxy and kube-router on this host, and their cleanup."""

    def __init__(self, fd: int) -> None:
        self._lock: int | None = fd
        # kube-router's iptables-restore creates the iptables filter table when the host
        # had none; then it goes again with the rest.
        self._had_filter_table = _has_filter_table()

    @classmethod
    def claim(cls) -> ServiceRules | None:
        """The lock, with whatever a dead holder left removed; None when another live
        cluster holds it."""
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCK_DIR / "services.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        rules = cls(fd)
        remove_service_rules()
        return rules

    def release(self) -> None:
        """After kube-proxy and kube-router have stopped: remove what they programmed."""
        try:
            remove_service_rules()
            if not self._had_filter_table and _filter_table_is_empty():
                _run("nft", "delete", "table", "ip", "filter", check=False)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None


def _has_filter_table() -> bool:
    return "table ip filter" in _run("nft", "list", "tables", check=False).splitlines()


def _filter_table_is_empty() -> bool:
    if not _has_filter_table():
        return False
    listing = json.loads(_run("nft", "-j", "list", "table", "ip", "filter", check=False) or "{}")
    return not any("rule" in item for item in listing.get("nftables", []))


def remove_service_rules() -> None:
    """kube-proxy's tables and kube-router's chains and sets, and nothing else.

    Never `kube-router --cleanup-config`: it flushes all of IPVS and destroys every ipset
    on the host. `kube-proxy --cleanup` leaves empty chains and tables behind."""
    for family in ("ip", "ip6"):
        _run("nft", "delete", "table", family, "kube-proxy", check=False)
    if shutil.which("iptables-save") is not None:
        rules = _run("iptables-save", "-t", "filter", check=False).splitlines()
        ours = [
            line[1:].split()[0]
            for line in rules
            if line.startswith(":") and line[1:].startswith(KUBE_ROUTER_CHAIN_PREFIXES)
        ]
        for line in rules:
            # "-A FORWARD ... -j KUBE-ROUTER-FORWARD": the jumps into them, from anywhere.
            parts = shlex.split(line)
            if line.startswith("-A ") and "-j" in parts and parts[parts.index("-j") + 1] in ours:
                _run("iptables", "-t", "filter", "-D", *parts[1:], check=False)
        for chain in ours:
            _run("iptables", "-t", "filter", "-F", chain, check=False)
        for chain in ours:
            _run("iptables", "-t", "filter", "-X", chain, check=False)
    if shutil.which("ipset") is not None:
        for name in _run("ipset", "list", "-n", check=False).split():
            if name.startswith(KUBE_ROUTER_IPSET_PREFIXES):
                _run("ipset", "destroy", name, check=False)


def _netns_names() -> list[str]:
    names = []
    for line in _run("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(NETNS_PREFIX):
            names.append(name)
    return names


def _bridges_in_use() -> list[str]:
    net = Path("/sys/class/net")
    return sorted(
        p.name
        for p in net.iterdir()
        if p.name.startswith(BRIDGE_PREFIX) and p.name[len(BRIDGE_PREFIX) :].isdigit()
    )


def network_for(ip: str) -> PodNetwork | None:
    """The live pod network an address belongs to (None: a loopback pod address)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address not in POD_RANGE:
        return None
    network = PodNetwork(int(str(address).split(".")[2]) // 16)
    return network if Path(f"/sys/class/net/{network.bridge}").exists() else None


def host_address() -> str:
    """Where a server on the host should listen so that pods can call it: the gateway of
    a live pod network, else loopback (the fallback mode, where pods are loopback too)."""
    for bridge in _bridges_in_use():
        return PodNetwork(int(bridge[len(BRIDGE_PREFIX) :])).gateway
    return "127.0.0.1"


# -- pods ------------------------------------------------------------------------------------


def netns_name(ip: str) -> str:
    return f"{NETNS_PREFIX}{ip}"


def _veth_name(ip: str) -> str:
    return "lrv" + "".join(f"{int(o):02x}" for o in ip.split("."))


def _mac(ip: str) -> str:
    return "02:00:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def add_pod(ip: str) -> str:
    """Give a pod IP its namespace on its cluster's bridge; returns the namespace's name."""
    network = network_for(ip)
    if network is None:
        raise RuntimeError(f"{ip} is in no live pod network")
    name, veth = netns_name(ip), _veth_name(ip)
    remove_pod(ip)  # a namespace left on this IP by a pod that died with its runner
    _run("ip", "netns", "add", name)
    try:
        _run(
            "ip",
            "link",
            "add",
            veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            _mac(ip),
            "netns",
            name,
        )
        _run("ip", "link", "set", veth, "master", network.bridge)
        # Hairpin: a pod reaching itself through its Service's ClusterIP.
        _run("ip", "link", "set", "dev", veth, "type", "bridge_slave", "hairpin", "on")
        _run("ip", "link", "set", veth, "up")
        _run(
            "ip",
            "-n",
            name,
            "-batch",
            "-",
            stdin=(
                f"addr add {ip}/{network.block.prefixlen} dev eth0\n"
                "link set eth0 up\n"
                "link set lo up\n"
                f"route add default via {network.gateway}\n"
            ),
        )
    except BaseException:
        remove_pod(ip)
        raise
    return name


def remove_pod(ip: str) -> None:
    """Delete a pod's namespace and veth. Its processes should be gone already (a
    namespace deleted under a live process stays alive); any left are killed first."""
    name = netns_name(ip)
    for pid in _run("ip", "netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _run("ip", "link", "del", _veth_name(ip), check=False)
    _run("ip", "netns", "del", name, check=False)
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def write_hosts(netns: str, text: str) -> None:
    """The pod's /etc/hosts: ``ip netns exec`` mounts /etc/netns/<name>/hosts over
    /etc/hosts for the processes it starts, so the pod resolves the names the runner
    publishes (cluster DNS for headless Services). Written in place, so processes already
    running (the mount holds the file, not the path) see each change."""
    hosts = NETNS_ETC / netns / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    with open(hosts, "w", encoding="utf-8") as handle:
        handle.write(text)


def exec_prefix(netns: str) -> list[str]:
    """The argv prefix that starts a process in a pod's namespace."""
    return ["ip", "netns", "exec", netns]


_libc = ctypes.CDLL(None, use_errno=True)


def run_in_netns(netns: str, function: Callable[[], T]) -> T:
    """Call ``function`` on a thread that entered the namespace: sockets it opens live
    there (and keep living there whichever thread uses them later). Python 3.11 has no
    os.setns, hence ctypes."""
    result: list[T] = []
    error: list[BaseException] = []

    def enter_and_call() -> None:
        try:
            with open(f"/run/netns/{netns}") as handle:
                if _libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns} failed")
            result.append(function())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=enter_and_call, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
