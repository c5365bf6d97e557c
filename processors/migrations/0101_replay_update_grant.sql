-- The rebuild writes replay rows with the same upsert as live state, which needs UPDATE.
GRANT UPDATE ON processors_replay.customers, processors_replay.subscriptions,
    processors_replay.invoices, processors_replay.payments, processors_replay.refunds,
    processors_replay.credit_notes TO ledgerhook_app;
