"""A small network of namespaces for partition scenarios (root only).

Rules of this file:

* Everything is named with this process's pid (``shc<pid>-...``), so parallel runs never
  collide, and everything made is deleted in ``close`` (a finalizer), even on failure.
* Hosts are namespaces joined by veth pairs to a bridge inside a namespace of our own;
  addresses are 169.254.77.x/24, reachable only inside these namespaces. Nothing is
  added to the root namespace.
* Partitions are nft drop rules inside a host's namespace (table ``inet chaos``);
  ``heal`` deletes that table.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field

SUBNET = "169.254.77"


def available() -> str | None:
    """None if partitions can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs nftables and iproute2)"
    return None


def sh(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


@dataclass
class NetLab:
    tag: str = field(default_factory=lambda: f"shc{os.getpid()}")
    hosts: dict[str, str] = field(default_factory=dict)  # host name -> its ip
    made: list[str] = field(default_factory=list)  # namespaces, in creation order

    def __post_init__(self) -> None:
        self.bridge_ns = f"{self.tag}-br"
        self._add_ns(self.bridge_ns)
        sh("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def add_host(self, host: str) -> str:
        """A namespace joined to the bridge; its ip address."""
        index = len(self.hosts) + 1
        name, port = self.ns(host), f"p{index}"
        ip = f"{SUBNET}.{index}"
        self._add_ns(name)
        sh("ip", "link", "add", "eth0", "netns", name, "type", "veth",
           "peer", "name", port, "netns", self.bridge_ns)  # fmt: skip
        sh("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", name, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
        self.hosts[host] = ip
        return ip

    def exec_prefix(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def block(self, host: str, peers: list[str], direction: str = "both") -> None:
        """Drop ``host``'s traffic with ``peers``: "both", "out" (host -> peer) or "in"."""
        name = self.ns(host)
        rules = ["add table inet chaos"]
        for hook in ("input", "output"):
            rules.append(f"add chain inet chaos {hook} {{ type filter hook {hook} priority 0 ; }}")
        for peer in peers:
            ip = self.hosts[peer]
            if direction in ("both", "in"):
                rules.append(f"add rule inet chaos input ip saddr {ip} drop")
            if direction in ("both", "out"):
                rules.append(f"add rule inet chaos output ip daddr {ip} drop")
        subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-f", "-"],
            input="\n".join(rules) + "\n", text=True, check=True, timeout=30,
        )  # fmt: skip

    def heal(self, host: str) -> None:
        sh("ip", "netns", "exec", self.ns(host), "nft", "delete", "table", "inet", "chaos")

    def close(self) -> list[str]:
        """Delete every namespace made (their veths and bridge go with them); names of
        those that could not be deleted."""
        failed = []
        for name in reversed(self.made):
            try:
                sh("ip", "netns", "del", name)
            except RuntimeError:
                failed.append(name)
        self.made.clear()
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            listed = subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True, timeout=30
            )
            failed += [
                line.split()[0] for line in listed.stdout.splitlines() if line.startswith(self.tag)
            ]
        return sorted(set(failed))
