"""Budgets: an amount in USD per day, week or month for a key, org or project, its status (spent so far,
share used, projection to the period's end) and the notifications when thresholds are crossed or the
projection says the budget will be exceeded (those are sent by the alert runner, pipeline/alerts/budgets.py).

Modules: ``model`` (what a budget is, and its validation), ``periods`` (period bounds in a zone),
``status`` (spend and projection through the usage query module), ``store`` (the ``budgets`` table),
``api`` (HTTP routes), ``export`` (the status CSV). See docs/alerts.md, "Budgets".
"""
