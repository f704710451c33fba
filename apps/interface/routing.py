"""WebSocket routes. Any other path is refused at the handshake (HTTP 403)."""

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path, re_path

from apps.interface.consumers import NO_CHANNEL_LAYER, ChatConsumer


class RefusingConsumer(AsyncWebsocketConsumer):
    """Closes before accepting: a wrong path gets 403 instead of an error from the router."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self) -> None:
        await self.close()


websocket_urlpatterns = [
    path("ws/v1/chat", ChatConsumer.as_asgi()),
    re_path(r"", RefusingConsumer.as_asgi()),
]

websocket_router = URLRouter(websocket_urlpatterns)
