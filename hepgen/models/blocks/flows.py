"""Rational-quadratic spline coupling flows, built with ``zuko``.

``zuko.flows.NSF`` with ``passes=2`` is a coupling flow (each transform conditions one
half of the features on the other, alternating halves); its splines live on [-5, 5]
with identity tails, the tail bound of the thesis (seed 000 L2155).
"""

from __future__ import annotations


def rqs_coupling_flow(
    features: int,
    context: int = 0,
    transforms: int = 25,
    bins: int = 6,
    hidden: int = 128,
    layers: int = 3,
):
    """An RQS coupling flow p(x | context) (defaults: seed 000 Table 5.1)."""
    import zuko

    return zuko.flows.NSF(features, context, bins=bins, transforms=transforms, passes=2, hidden_features=[hidden] * layers)
