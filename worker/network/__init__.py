"""The network: guarded HTTP, the private-address guard, URL canonicalization,
robots.txt and per-host politeness."""
