"""The moderators' side: users and roles per tenant (auth.py), the review queue, leases and decisions
(service.py), and the HTTP API and web page (app.py)."""
