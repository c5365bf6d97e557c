"""The price map: which target price a source price becomes (pure lookup).

Migrations rarely keep price ids (Chargebee ``team-EUR-monthly`` becomes Stripe
``price_1Nx...``), so the comparison needs the operator's mapping; it is imported into
``coexist.prices`` (``ledgerhook migration prices import``). A source price with no entry still
matches a target price with the very same id (a migration that kept its ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["PriceMap"]


class PriceMap:
    def __init__(self, entries: Mapping[tuple[str, str, str], str] | None = None) -> None:
        # (source provider, source price, target provider) -> target price
        self._entries = dict(entries or {})

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str, str, str]]) -> PriceMap:
        return cls({(sp, s, tp): t for sp, s, tp, t in rows})

    def target_for(
        self, source_provider: str, source_price: str, target_provider: str
    ) -> str | None:
        return self._entries.get((source_provider, source_price, target_provider))

    def __len__(self) -> int:
        return len(self._entries)
