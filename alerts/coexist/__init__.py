"""Coexistence alerts: what goes wrong while one customer lives in two billing providers.

:mod:`~alerts.coexist.model` (facts), :mod:`~alerts.coexist.rules` (pure rules, registered in
:data:`alerts.rules.RULES`), :mod:`~alerts.coexist.facts` (gathering them from the state, the
links and the authority history), :mod:`~alerts.coexist.sweep` (the cron job: links from
metadata, then the rules through the alert lifecycle), :mod:`~alerts.coexist.gate` (the
post-migration check of a cohort that ``ledgerhook migration verify`` runs).
"""
