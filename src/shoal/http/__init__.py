"""HTTP services: the scheduler's dashboard and JSON API, Prometheus ``/metrics`` and
``/health`` on the scheduler and every worker (see ``shoal.http.apps`` for the routes).

Modules: ``apps`` (routes), ``auth`` (the token), ``live`` (the dashboard's feed),
``metrics`` (Prometheus collectors), ``records`` (what the shells record for us),
``service`` (serving on the server's loop), ``views`` (JSON from the scheduler's state),
``static/`` (the page, its script and style: nothing is fetched from the internet).
"""
