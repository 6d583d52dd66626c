"""Small fake remote services on 127.0.0.1 for the tests (Atlassian, Slack, model APIs)."""
