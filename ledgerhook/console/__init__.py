"""The web console: server-rendered pages under ``/console`` for auditors and on-call.

Same app, same data, same rules as the JSON API: the pages call the repository and service
functions the API's handlers call (:mod:`audit.repository`, :mod:`processors.queries`,
:mod:`alerts.lifecycle` and :mod:`alerts.oncall`, :func:`processors.service.process_delivery`),
and the roles come from :mod:`audit.permissions` through :func:`audit.tokens.role_allows`.

- Sign-in with an API token opens a server-side session (:mod:`audit.sessions`); the browser
  holds only a random session id in an HttpOnly, SameSite=Strict cookie (Secure over TLS).
- Every form carries a CSRF token tied to the session; every response carries a strict CSP
  (:mod:`ledgerhook.console.security`); every page is recorded in ``audit.access_log``
  (:mod:`ledgerhook.console.auth`).
- Templates are Jinja with autoescaping and no ``|safe``: bodies, headers, ids and alert text
  render as text (:mod:`ledgerhook.console.templating`). htmx is vendored in ``static/`` (no
  build step, nothing fetched at run time) and only refreshes the health panel.
- Places where parallel work plugs in (brake, proofs, checkpoints, links) are all in
  :mod:`ledgerhook.console.seams`.
"""

from __future__ import annotations

from ledgerhook.console.router import console_router
from ledgerhook.console.templating import template_config

__all__ = ["console_router", "template_config"]
