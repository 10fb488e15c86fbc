"""From check results to a decision: profiles, whitelist, headers, and the async entry."""
