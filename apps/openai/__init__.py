"""OpenAI's API as a dialect of the platform: its request shapes (validated into what the one
admission pipeline takes), its objects, its error envelope, and the `chat.completion.chunk`
stream translated from an answer's events (apps.dify.events). No views: the doors
(apps.interface) use it."""
