"""The HTTP edge both clients share: sessions and proxies, URL rules, reachability, the retry
policy."""
