"""What every platform adapter shares: the store-then-ack bridge, the dedupe cache, webhook
refusals and bounded bodies, reply splitting and reference rendering. Written once here, so a
new platform inherits the hardening instead of copying it."""
