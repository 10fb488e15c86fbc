"""Pure check logic: DNS lookup values in, RFC 8601 results out. No I/O, no asyncio, no clock."""
