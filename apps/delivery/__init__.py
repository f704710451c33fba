"""How an answer reaches its client: one delivery for every door (Dify's and OpenAI's event
streams, the WebSocket, blocking JSON and XML); each door only shapes its frames."""
