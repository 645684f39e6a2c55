"""Turning records into tables people read: leaderboards and run comparisons."""
