from django.urls import path

from .api import CustomerDetailApi

urlpatterns = [
    path("api/loyalty/customers/<str:customer_id>", CustomerDetailApi.as_view(), name="loyalty-customer"),
]
