"""Provider migration with coexistence: the same customer in Stripe and Chargebee, side by side.

Pure modules (no I/O): :mod:`~processors.coexist.model` (values), :mod:`~.imports` (CSV/JSON
link and price imports), :mod:`~.authority` (which side is authoritative when),
:mod:`~.prices` (the price map), :mod:`~.compare` (checks and tolerances on one pair),
:mod:`~.report` (run summaries and the diff with the previous run).

I/O modules take a connection (the caller owns the transaction): :mod:`~.links` (imports,
unlinking), :mod:`~.metadata` (links from a metadata key), :mod:`~.price_store` (the price
map), :mod:`~.cutover` (plan, cut over, roll back), :mod:`~.verify`
(streamed verification runs over a state schema, the replay's included), :mod:`~.queries`
(reads for the API and the state routes). :mod:`~.routes` is the HTTP API (``/migration``).

Tables live in the ``coexist`` schema (``processors/migrations/0110_coexist.sql``).
"""
