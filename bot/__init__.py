"""Chat platforms (Slack, later Teams) and the answer flow they share."""
