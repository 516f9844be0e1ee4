"""Traefik as the local stack's data plane: the real proxy the gatewayAPI and nginx routers steer.

Built from its pinned Go module by hack/build-traefik.sh (with the standard-channel Gateway API CRDs
of the release it is built against), it runs as a host process on the node's bridge address with
the admin kubeconfig (Traefik's Kubernetes client reads KUBECONFIG outside a cluster) and forwards to
pod IPs from the EndpointSlices of each backend Service. One process, two providers, one entry point
each so that their routes never compete for the same request:

- Gateway API (entry point `web`): GatewayClass/Gateway/HTTPRoute; pods reach it through the
  selectorless Service traefik.mlrollout-gateway:80;
- NGINX annotations (`--providers.kubernetesIngressNGINX`, entry point `nginx`): Ingresses of the
  IngressClass `nginx` (controller k8s.io/ingress-nginx) with ingress-nginx's annotations, canary
  ones included; it publishes the node address in each Ingress it serves (status.loadBalancer).
  Pods reach it through traefik-nginx.mlrollout-gateway:80.

    proxy = Traefik.start(cluster, rundir, log)   # CRDs, process, GatewayClass + Gateway `web`, IngressClass
    proxy.parent_ref                              # what an HTTPRoute puts in spec.parentRefs
    proxy.ingress_class                           # what an Ingress puts in spec.ingressClassName
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import real_node
from local_cluster import LocalCluster
from real_stack import HostProcess, StackError, apply, kubectl_json, poll, publish

HACK = Path(__file__).resolve().parent
BUILD_SCRIPT = HACK / "build-traefik.sh"
BUILD_TIMEOUT_SECONDS = 3600  # a cold build on 2 cores takes several minutes
NAMESPACE = "mlrollout-gateway"
GATEWAY_CLASS = "traefik"
UPSTREAM_IDLE_SECONDS = 2  # under the serving pods' MLROLLOUT_KEEPALIVE (5 s)
GATEWAY = "web"
CONTROLLER = "traefik.io/gateway-controller"
SERVICE_PORT = 80
INGRESS_CLASS = "nginx"
NGINX_CONTROLLER = "k8s.io/ingress-nginx"  # the controller value Traefik's NGINX provider claims
NGINX_SERVICE = "traefik-nginx"


def build_traefik() -> Path:
    """The cache dir holding bin/traefik and crds/, building on first use."""
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            check=False,
            timeout=BUILD_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{BUILD_SCRIPT} did not finish within {BUILD_TIMEOUT_SECONDS}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr + proc.stdout).splitlines()[-40:])
        raise StackError(f"building Traefik with {BUILD_SCRIPT} failed (exit {proc.returncode}):\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


def install_gateway_crds(cluster: LocalCluster, crds: Path) -> None:
    """The Gateway API CRDs (standard channel), server-side applied: idempotent across runs."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds), timeout=120)
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/gatewayclasses.gateway.networking.k8s.io", "crd/gateways.gateway.networking.k8s.io",
        "crd/httproutes.gateway.networking.k8s.io",
    )  # fmt: skip


def gateway_objects(port: int) -> list[dict[str, Any]]:
    """A GatewayClass for Traefik and one Gateway whose HTTP listener is Traefik's `web` entry point
    (Traefik maps listeners to entry points by port), open to routes from every namespace."""
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": CONTROLLER},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": NAMESPACE},
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def ingress_class() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": INGRESS_CLASS},
        "spec": {"controller": NGINX_CONTROLLER},
    }


@dataclass
class Traefik:
    process: HostProcess
    web_port: int
    ping_port: int
    nginx_port: int

    @property
    def url(self) -> str:
        """From the host."""
        return f"http://{real_node.NODE_IP}:{self.web_port}"

    @property
    def in_cluster_url(self) -> str:
        """From pods, by the Service's DNS name."""
        return f"http://traefik.{NAMESPACE}:{SERVICE_PORT}"

    @property
    def nginx_in_cluster_url(self) -> str:
        """The NGINX-annotation provider's entry point, from pods."""
        return f"http://{NGINX_SERVICE}.{NAMESPACE}:{SERVICE_PORT}"

    @property
    def parent_ref(self) -> dict[str, str]:
        return {"name": GATEWAY, "namespace": NAMESPACE}

    @property
    def ingress_class(self) -> str:
        return INGRESS_CLASS

    @classmethod
    def start(cls, cluster: LocalCluster, rundir: Path, log: Path) -> Traefik:
        built = build_traefik()
        install_gateway_crds(cluster, built / "crds")
        web, ping = real_node.free_port_on(real_node.NODE_IP), real_node.free_port_on(real_node.NODE_IP)
        nginx = real_node.free_port_on(real_node.NODE_IP)
        argv = [
            str(built / "bin" / "traefik"),
            f"--entryPoints.web.address={real_node.NODE_IP}:{web}",
            f"--entryPoints.traefik.address={real_node.NODE_IP}:{ping}",
            f"--entryPoints.nginx.address={real_node.NODE_IP}:{nginx}",
            "--ping=true",
            "--providers.kubernetesGateway=true",
            f"--providers.kubernetesGateway.statusAddress.ip={real_node.NODE_IP}",
            "--providers.kubernetesIngressNGINX=true",
            "--providers.kubernetesIngressNGINX.httpEntryPoint=nginx",
            f"--providers.kubernetesIngressNGINX.publishStatusAddress={real_node.NODE_IP}",
            # Its own servers transports (one per Ingress) take ingress-nginx's upstream keep-alive
            # timeout (60 s), not serversTransport's: the same 2 s, for the same 502 race.
            f"--providers.kubernetesIngressNGINX.upstreamKeepaliveTimeout={UPSTREAM_IDLE_SECONDS}",
            # Close idle upstream connections before the pod does (gunicorn keep-alive, 5 s): a POST
            # sent on a connection the pod closes at that instant is a 502 Go's transport cannot retry.
            f"--serversTransport.forwardingTimeouts.idleConnTimeout={UPSTREAM_IDLE_SECONDS}s",
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            "--log.level=INFO",
            "--accessLog=false",
        ]
        proc = HostProcess("traefik", rundir, log)
        proc.start(argv, web, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
        proxy = cls(proc, web, ping, nginx)
        try:
            proc.wait_http(f"http://{real_node.NODE_IP}:{ping}/ping", timeout=60)
            cluster.kubectl("create", "namespace", NAMESPACE, check=False)
            apply(cluster, *gateway_objects(web), ingress_class())
            publish(cluster, "traefik", NAMESPACE, SERVICE_PORT, web)
            publish(cluster, NGINX_SERVICE, NAMESPACE, SERVICE_PORT, nginx)
            poll("Gateway web programmed by Traefik", lambda: proxy.gateway_ready(cluster), 60)
        except Exception:
            proc.stop()
            raise
        return proxy

    def gateway_ready(self, cluster: LocalCluster) -> bool:
        gw = kubectl_json(cluster, "-n", NAMESPACE, "get", "gateway", GATEWAY)
        conditions = {c["type"]: c["status"] for c in (gw.get("status") or {}).get("conditions") or []}
        return conditions.get("Accepted") == "True" and conditions.get("Programmed") == "True"

    def stop(self) -> None:
        self.process.stop()


def ingress_manifest(name: str, namespace: str, ingress_class: str, paths: list[dict[str, Any]]) -> str:
    """An Ingress as a user writes it: one host-less rule with `paths`."""
    return json.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ingressClassName": ingress_class, "rules": [{"http": {"paths": paths}}]},
        }
    )


def route_manifest(
    name: str, namespace: str, rules: list[dict[str, Any]], parents: list[dict[str, str]]
) -> str:
    return json.dumps(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": parents, "rules": rules},
        }
    )
