"""Alerts for on-call: rules over facts, alert lifecycle, reconciliation, fetch-back, notifiers.

Layers, dependencies pointing one way:

- :mod:`alerts.model` and :mod:`alerts.rules`: pure facts, findings and rules (no I/O, no clock);
- :mod:`alerts.facts`: gathering facts from PostgreSQL (audit and processors tables);
- :mod:`alerts.lifecycle`: alert rows open → acknowledged → resolved, history, outbox rows;
- :mod:`alerts.reconcile`, :mod:`alerts.fetchback`: provider APIs (Stripe, Chargebee);
- :mod:`alerts.notify`: Sentry, Slack-compatible webhook, PagerDuty Events v2;
- :mod:`alerts.sweep`: the arq cron jobs; :mod:`alerts.routes`: the HTTP API.

Nothing outside imports this package except the worker's schedule, the app's routes and the CLI.
"""
