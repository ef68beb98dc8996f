"""Ingestion, splitting, candidate generation and pairing, accounts, and the logic behind the review and data pages."""
