"""``ledgerhook demo``: a realistic, signed story sent to a running instance, and what came of it.

:mod:`ledgerhook.demo.story` builds the events (pure), :mod:`ledgerhook.demo.standin` serves the
stand-in Stripe Events API, :mod:`ledgerhook.demo.runner` sends, reconciles and reports.
"""
