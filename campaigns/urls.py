from django.urls import path

from . import api

urlpatterns = [
    path("api/campaigns/estimate", api.EstimateView.as_view(), name="campaigns-estimate"),
    path("api/campaigns", api.CampaignCreateView.as_view(), name="campaigns-create"),
    path("api/campaigns/<int:campaign_id>", api.CampaignDetailView.as_view(), name="campaigns-detail"),
]
