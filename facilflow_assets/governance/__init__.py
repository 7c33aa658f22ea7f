"""Governance of registered versions: transitions, approvals and their audit trail."""
