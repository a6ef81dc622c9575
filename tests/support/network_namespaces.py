"""Hosts as Linux network namespaces on one bridge, for tests of the service across machines: each
host has its own address from 198.18.0.0/15 (RFC 2544's range for network tests) and its own
loopback, and the test process, in the root namespace, reaches every host through the bridge."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

TEST_RANGE = ipaddress.ip_network("198.18.0.0/15")
# The bridge, and the root namespace's link to it, get the first address of the subnet; hosts
# are numbered from here.
FIRST_HOST = 10


def ip(*args: str) -> str:
    """Runs `ip <args>`; its output, or CalledProcessError with ip's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(
            done.returncode, ["ip", *args], done.stdout, done.stderr
        )
    return done.stdout


def unavailable_reason() -> str | None:
    """Why this machine cannot build namespaced hosts (no `ip`, no CAP_NET_ADMIN), else None."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"ctprobe{uuid.uuid4().hex[:8]}"
    try:
        ip("netns", "add", probe)
    except subprocess.CalledProcessError as err:
        return f"network namespaces are not permitted here: {err.stderr.strip()}"
    try:
        ip("-n", probe, "link", "add", "name", "a", "type", "veth", "peer", "name", "b")
    except subprocess.CalledProcessError as err:
        return f"veth pairs are not permitted here: {err.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of the test range that no address or route of the root namespace touches (another
    run's network, a lab that uses the range)."""
    used: list[ipaddress.IPv4Network] = []
    for entry in json.loads(ip("-j", "-4", "addr")):
        for info in entry.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all")):
        dst = route.get("dst", "")
        if dst and dst != "default" and dst[0].isdigit():
            used.append(ipaddress.ip_network(dst, strict=False))
    candidates = list(TEST_RANGE.subnets(new_prefix=24))
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError(f"every /24 of {TEST_RANGE} is in use on this machine")


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    bridge_port: str  # the host's link as the bridge sees it: down = the cable pulled

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the host (`ip netns exec` execs it: the PID is the command's)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class Network:
    """A bridge in a namespace of its own (nothing of the root namespace's firewall applies), a
    link from the root namespace to it, and hosts added one by one; `remove()` takes it all
    down. Names carry a random run id, so runs side by side do not meet."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:6]
        self.subnet = free_subnet()
        self.bridge_namespace = f"ct{self.run_id}-net"
        self.root_link = f"ct{self.run_id}"  # interface names have 15 characters at most
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def create(self) -> None:
        self._add_namespace(self.bridge_namespace)
        ip("-n", self.bridge_namespace, "link", "add", "name", "br0", "type", "bridge")
        ip("-n", self.bridge_namespace, "link", "set", "dev", "br0", "up")
        ip("link", "add", "name", self.root_link, "type", "veth", "peer", "name", "root",
           "netns", self.bridge_namespace)  # fmt: skip
        ip("-n", self.bridge_namespace, "link", "set", "dev", "root", "master", "br0", "up")
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.root_link)
        ip("link", "set", "dev", self.root_link, "up")

    def add_host(self, name: str) -> Host:
        """A namespace with loopback up and eth0 on the bridge, at the next address."""
        assert len(name) <= 15 and name not in ("br0", "root"), name
        namespace = f"ct{self.run_id}-{name}"
        address = str(self.subnet.network_address + FIRST_HOST + len(self.hosts))
        self._add_namespace(namespace)
        ip("-n", namespace, "link", "set", "dev", "lo", "up")
        ip("-n", namespace, "link", "add", "name", "eth0", "type", "veth", "peer", "name", name,
           "netns", self.bridge_namespace)  # fmt: skip
        ip("-n", self.bridge_namespace, "link", "set", "dev", name, "master", "br0", "up")
        ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", namespace, "link", "set", "dev", "eth0", "up")
        host = Host(name, namespace, address, name)
        self.hosts[name] = host
        return host

    def cut(self, host: Host) -> None:
        """The host's link to the bridge goes down: its packets are dropped, in and out, with no
        error on either side (a pulled cable); its loopback keeps working."""
        ip("-n", self.bridge_namespace, "link", "set", "dev", host.bridge_port, "down")

    def restore(self, host: Host) -> None:
        ip("-n", self.bridge_namespace, "link", "set", "dev", host.bridge_port, "up")

    def remove(self) -> None:
        """Deletes the root namespace's link and every namespace (their links go with them).
        Processes must be stopped first: a namespace with processes in it outlives its name."""
        subprocess.run(["ip", "link", "del", self.root_link], capture_output=True)
        for namespace in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._namespaces.clear()

    def _add_namespace(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self._namespaces.append(namespace)


@contextlib.contextmanager
def namespaced_network(*host_names: str) -> Iterator[Network]:
    """A Network with these hosts, removed on the way out whatever happened."""
    network = Network()
    try:
        network.create()
        for name in host_names:
            network.add_host(name)
        yield network
    finally:
        network.remove()
