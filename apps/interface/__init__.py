"""The platform's doors: Dify's and OpenAI's routes (one list, apps.interface.routes), the
WebSocket chat and its routing, the chat page, and the API's own document. Thin: each parses its
request in its dialect (apps.dify, apps.openai), passes the admission pipeline (apps.gateway),
and has the answer delivered (apps.delivery) or calls one service or selector, then renders."""
