from django.urls import path

from metrics import views

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    # Before the admin's own routes (pwd_site/urls.py), which would answer 404 here.
    path("admin/capacity/", views.capacity_page, name="admin_capacity"),
]
