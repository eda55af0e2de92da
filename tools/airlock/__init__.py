"""airlock: OpenStack service images built offline, reproducibly, to the digest."""
