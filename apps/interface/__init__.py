"""The platform's entry points: the /v1 REST routes (answers and conversations), the WebSocket
chat and its routing, the chat page, and the API's own document. Thin: each parses its request,
passes the admission pipeline (apps.gateway), calls one service or selector, and renders."""
