"""The platform's HTTP front: the ASGI handler that serves the API on the event loop alone,
forwarded headers believed from trusted proxies only, and request bodies limited by route
while they arrive."""
