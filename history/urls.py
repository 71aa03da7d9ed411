from django.urls import path

from . import api

urlpatterns = [
    path("api/history/customers/<str:customer_id>/payments", api.CustomerPaymentsView.as_view(),
         name="history-customer-payments"),
    path("api/history/payments/<str:payment_id>", api.PaymentView.as_view(), name="history-payment"),
    path("api/history/payments/<str:payment_id>/repay", api.RepayView.as_view(), name="history-repay"),
]
