"""`python -m mlrollout.operator [--standalone | --peering NAME [--priority N]] [--namespace NS ...]`.

With peering (the default, HA), kopf lets only the replica with the highest priority act and
pauses every replica that sees a live peer of *equal* priority, so two replicas started with the
same priority would both stand still. Each replica therefore draws a random priority unless one is
given (`--priority` or MLROLLOUT_PEERING_PRIORITY): the highest acts, the others stand by and take
over when its peering entry expires. The peering object, a ClusterKopfPeering named NAME (also
with --namespace: handlers.configure keeps the peering cluster-wide), must exist:
crds/kopf-peering.yaml + manifests/.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys

import kopf

PRIORITY_RANGE = 1 << 24  # wide enough that two replicas practically never draw the same value


def draw_priority(configured: str | None) -> int:
    """The configured priority, else a random one in [1, 2^24)."""
    if configured:
        return int(configured)
    return 1 + secrets.randbelow(PRIORITY_RANGE - 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mlrollout-operator", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="no peering (single replica, tests)")
    mode.add_argument(
        "--peering",
        default=os.environ.get("MLROLLOUT_PEERING", "mlrollout"),
        help="peering name: replicas with the same name never act together (needs the kopf peering CRD)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority (default: MLROLLOUT_PEERING_PRIORITY, else a random draw per replica)",
    )
    parser.add_argument("--namespace", action="append", default=[], help="watch only these namespaces")
    parser.add_argument(
        "--liveness", default=os.environ.get("MLROLLOUT_LIVENESS"), help="e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not args.standalone and args.priority is None:
        args.priority = draw_priority(os.environ.get("MLROLLOUT_PEERING_PRIORITY"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not args.verbose:  # kopf logs every handler success at INFO; our decisions are logged anyway
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import mlrollout.operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=None if args.standalone else args.priority,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
