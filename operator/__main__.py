"""`python -m mlrollout.operator [--standalone | --peering NAME] [--namespace NS ...] [--liveness URL]`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlrollout-operator", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="no peering (single replica, tests)")
    mode.add_argument(
        "--peering",
        default=os.environ.get("MLROLLOUT_PEERING", "mlrollout"),
        help="peering name: replicas with the same name never act together (needs the kopf peering CRD)",
    )
    parser.add_argument("--namespace", action="append", default=[], help="watch only these namespaces")
    parser.add_argument(
        "--liveness", default=os.environ.get("MLROLLOUT_LIVENESS"), help="e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
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
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
