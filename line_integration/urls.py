from django.urls import path

from . import api

urlpatterns = [
    path("line/braze/webhook", api.braze_webhook, name="line-braze-webhook"),
    path("line/webhook", api.line_webhook, name="line-webhook"),
    path("api/line/link-nonce", api.LinkNonceView.as_view(), name="line-link-nonce"),
    path("api/line/unlink", api.UnlinkView.as_view(), name="line-unlink"),
]
