from django.urls import path

from . import views

urlpatterns = [path("pubsub/push/<str:topic>", views.pubsub_push, name="pubsub-push")]
