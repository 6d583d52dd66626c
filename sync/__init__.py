"""Confluence and Jira clients, content conversion, chunking, the sync engine and webhooks."""
