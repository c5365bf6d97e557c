"""One module per provider, each exposing a pure ``verify(headers, body, now, endpoint)``.

Adding a provider is adding a module and one entry in :data:`VERIFIERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ingest.providers import chargebee, stripe
from ingest.providers.base import VerifiedDelivery
from ledgerhook.settings import EndpointSettings

__all__ = ["VERIFIERS", "VerifiedDelivery", "Verifier"]

Verifier = Callable[[Mapping[str, str], bytes, float, EndpointSettings], VerifiedDelivery]

VERIFIERS: dict[str, Verifier] = {
    stripe.PROVIDER: stripe.verify,
    chargebee.PROVIDER: chargebee.verify,
}
